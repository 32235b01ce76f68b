"""Create the WebhookEndpoint row Stripe's events are checked against, and print its URL.

# Create the endpoint on Stripe (needs STRIPE_SECRET_KEY); Stripe returns its secret:
manage.py billing_webhook_endpoint --base-url https://api.example.com

# Record an endpoint made in the Stripe dashboard (its signing secret):
manage.py billing_webhook_endpoint --base-url https://api.example.com --secret whsec_...
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from billing.payments import provisioning, stripe_events
from lithtrix.core.exceptions import ApiError


class Command(BaseCommand):
    help = "Create the Stripe WebhookEndpoint row (and, without --secret, the endpoint on Stripe)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--base-url", required=True, help="Public base URL, e.g. https://api.example.com"
        )
        parser.add_argument(
            "--secret", help="Signing secret (whsec_...) of an endpoint made elsewhere"
        )
        parser.add_argument("--id", dest="endpoint_id", help="Stripe id (we_...) of that endpoint")

    def handle(self, *args, base_url: str, secret: str | None, endpoint_id: str | None, **options):
        if not base_url.startswith(("https://", "http://")):
            raise CommandError("--base-url must start with https:// (or http:// for local use).")
        url = base_url.rstrip("/") + reverse("billing-webhook")
        try:
            endpoint = provisioning.webhook_endpoint_register(
                url=url, secret=secret, endpoint_id=endpoint_id
            )
        except ApiError as exc:
            raise CommandError(f"Stripe: {exc.message}") from exc
        djstripe_url = base_url.rstrip("/") + reverse(
            "djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid}
        )
        events = ", ".join(stripe_events.WEBHOOK_EVENTS)
        self.stdout.write(f"Webhook endpoint {endpoint.id} ({events})")
        self.stdout.write(f"URL: {url}")
        self.stdout.write(f"Also accepted (dj-stripe's URL for this endpoint): {djstripe_url}")
