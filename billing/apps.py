from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and usage"

    def ready(self) -> None:
        from billing.payments import stripe_client, webhooks

        stripe_client.apply_settings()
        webhooks.connect()
