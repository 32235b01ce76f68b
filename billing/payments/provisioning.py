"""Local provisioning of dj-stripe's own rows: the account and key of a local Stripe,
the Pro plan there, and the WebhookEndpoint rows Stripe's events are checked against.

Used by the management commands (make run, deploy) and the tests.
"""

from __future__ import annotations

import secrets

import stripe
from django.conf import settings
from django.db import transaction
from djstripe import models as djstripe_models

from billing.payments import stripe_calls, stripe_client
from billing.payments.stripe_events import WEBHOOK_EVENTS
from lithtrix.core.exceptions import PaymentProviderError, ValidationError


@transaction.atomic
def local_stripe_account_ensure(
    *, secret_key: str, account_id: str = "acct_localstripe"
) -> djstripe_models.APIKey:
    """The Account and APIKey rows dj-stripe needs for a Stripe-compatible local server.

    dj-stripe looks up the account of a key with GET /v1/account on first use;
    localstripe has no such route, so the rows are made here. For real Stripe keys
    this is not needed (dj-stripe fetches the account itself).
    """
    account, _ = djstripe_models.Account.objects.get_or_create(
        id=account_id, defaults={"livemode": False, "stripe_data": {"id": account_id}}
    )
    key, _ = djstripe_models.APIKey.objects.get_or_create_by_api_key(secret_key)
    if key.djstripe_owner_account_id != account.pk:
        key.djstripe_owner_account = account
        key.name = "localstripe"
        key.save()
    return key


def local_pro_plan_ensure(*, plan_id: str, amount: int = 2900, currency: str = "usd") -> str:
    """The monthly Pro plan on a Stripe-compatible local server (localstripe), made once.

    Stripe accepts a plan id wherever a price id goes, so STRIPE_PRO_PRICE_ID can
    name it. Returns the id.
    """
    try:
        return stripe_calls.plan_retrieve(plan_id=plan_id).id
    except ValidationError:
        raise
    except PaymentProviderError as exc:
        cause = exc.__cause__
        if not isinstance(cause, stripe.InvalidRequestError) or cause.http_status != 404:
            raise
    return stripe_calls.pro_plan_create(
        plan_id=plan_id, amount=amount, currency=currency, product_name="Lithtrix Pro"
    ).id


@transaction.atomic
def webhook_endpoint_register(
    *,
    url: str,
    secret: str | None = None,
    endpoint_id: str | None = None,
    livemode: bool | None = None,
) -> djstripe_models.WebhookEndpoint:
    """The WebhookEndpoint row Stripe's signed events are checked against.

    Without ``secret`` the endpoint is created on Stripe (which answers with its
    signing secret); with one, it records an endpoint made elsewhere (the Stripe
    dashboard, localstripe's /_config/webhooks).
    """
    if livemode is None:
        livemode = settings.STRIPE_LIVE_MODE
    if secret is None:
        endpoint = djstripe_models.WebhookEndpoint(url=url)
        stripe_endpoint = stripe_calls.webhook_endpoint_create(
            url=url,
            enabled_events=WEBHOOK_EVENTS,
            metadata={"djstripe_uuid": str(endpoint.djstripe_uuid)},
        )
        row = djstripe_models.WebhookEndpoint.sync_from_stripe_data(
            stripe_endpoint, api_key=stripe_client.api_key()
        )
        row.secret = stripe_endpoint["secret"]
        row.save()
        return row
    endpoint_id = endpoint_id or f"we_local_{secrets.token_hex(8)}"
    row, _ = djstripe_models.WebhookEndpoint.objects.update_or_create(
        id=endpoint_id,
        defaults={
            "url": url,
            "secret": secret,
            "livemode": livemode,
            "enabled_events": WEBHOOK_EVENTS,
            "status": "enabled",
            "api_version": "",
            "stripe_data": {"id": endpoint_id, "object": "webhook_endpoint", "url": url},
        },
    )
    return row
