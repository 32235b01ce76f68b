"""Prepare dj-stripe for a localstripe server (what `make run` does by itself).

Creates the Account and APIKey rows dj-stripe would otherwise fetch with
GET /v1/account (localstripe has no such route); with --webhook-url,
registers that URL with localstripe and records the matching WebhookEndpoint row;
with --pro-plan ID, creates the monthly Pro plan ID on localstripe (localstripe has
Plans, not Prices; STRIPE_PRO_PRICE_ID=ID then subscribes to it).
Reads STRIPE_SECRET_KEY and STRIPE_API_BASE from the environment.
"""

from __future__ import annotations

import json
import secrets
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.payments import provisioning, stripe_events
from lithtrix.core.exceptions import ApiError

LOCAL_ENDPOINT_ID = "we_localstripe"


class Command(BaseCommand):
    help = "Create dj-stripe's Account/APIKey rows (and a webhook) for a localstripe server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--webhook-url", help="Where localstripe should send events")
        parser.add_argument("--pro-plan", help="Create this monthly Pro plan id on localstripe")

    def handle(
        self, *args, webhook_url: str | None, pro_plan: str | None = None, **options
    ) -> None:
        key = settings.STRIPE_SECRET_KEY
        if not key.startswith("sk_test_"):
            raise CommandError(
                "STRIPE_SECRET_KEY must be a test key (sk_test_...) for localstripe."
            )
        if not settings.STRIPE_API_BASE:
            raise CommandError("STRIPE_API_BASE must point at the localstripe server.")
        provisioning.local_stripe_account_ensure(secret_key=key)
        self.stdout.write("dj-stripe Account and APIKey rows ready for localstripe.")
        if pro_plan:
            try:
                plan_id = provisioning.local_pro_plan_ensure(plan_id=pro_plan)
            except ApiError as exc:
                raise CommandError(f"Stripe: {exc.message}") from exc
            self.stdout.write(f"Pro plan {plan_id} on localstripe (STRIPE_PRO_PRICE_ID={plan_id}).")
        if webhook_url:
            secret = f"whsec_{secrets.token_hex(16)}"
            body = json.dumps(
                {"url": webhook_url, "secret": secret, "events": stripe_events.WEBHOOK_EVENTS}
            )
            request = urllib.request.Request(  # noqa: S310 - the configured local server
                f"{settings.STRIPE_API_BASE.rstrip('/')}/_config/webhooks/lithtrix",
                data=body.encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                pass
            provisioning.webhook_endpoint_register(
                url=webhook_url, secret=secret, endpoint_id=LOCAL_ENDPOINT_ID, livemode=False
            )
            self.stdout.write(
                f"localstripe sends {json.dumps(stripe_events.WEBHOOK_EVENTS)} to {webhook_url}"
            )
