from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and usage"

    def ready(self) -> None:
        from accounts.signals import agent_deleted, agent_deletion_requested
        from billing.payments import cancel, stripe_client

        stripe_client.apply_settings()
        agent_deletion_requested.connect(
            cancel.on_agent_deletion_requested,
            dispatch_uid="lithtrix:billing:agent_deletion_requested",
        )
        agent_deleted.connect(
            cancel.on_agent_deleted, dispatch_uid="lithtrix:billing:agent_deleted"
        )
