"""Stripe's current state: read from Stripe, mirrored into dj-stripe's tables.

Called with no transaction of ours open: Stripe answers in its own time, and
dj-stripe's sync writes its rows in short transactions of its own.
"""

from __future__ import annotations

from typing import Any

import stripe
from djstripe import models as djstripe_models

from billing.payments import stripe_calls, stripe_client
from lithtrix.core.exceptions import PaymentProviderError


def stripe_id(value: Any) -> str | None:
    """The id of a Stripe reference, expanded (an object) or not (a string)."""
    if value is None or isinstance(value, str):
        return value
    return value["id"]


def stripe_missing(exc: BaseException) -> bool:
    """Whether Stripe answered "no such object" (404 resource_missing) behind ``exc``.

    stripe_client raises PaymentProviderError from Stripe's error; dj-stripe may
    raise it wrapped: the cause chain is followed.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, stripe.InvalidRequestError):
            return current.http_status == 404 or current.code == "resource_missing"
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def customer_known(customer_id: str) -> bool:
    """Whether Stripe still has the customer (not deleted in its dashboard, not lost
    by a local Stripe that restarted empty)."""
    try:
        customer = stripe_calls.customer_retrieve(customer_id=customer_id)
    except PaymentProviderError as exc:
        if stripe_missing(exc):
            return False
        raise
    # stripe-python 15's objects are not dicts (no .get).
    return not ("deleted" in customer and customer["deleted"])  # noqa: RUF019


def mirror(
    *,
    customer: Any = None,
    payment_method: Any = None,
    subscription: Any = None,
    invoice: Any = None,
    event: Any = None,
) -> Any:
    """Mirror Stripe objects into dj-stripe's tables with dj-stripe's own sync; the
    mirrored dj-stripe Event when ``event`` (Stripe's JSON of one) is given."""
    api_key = stripe_client.api_key()
    with stripe_client.translated_errors("djstripe.sync"):
        if customer is not None:
            djstripe_models.Customer.sync_from_stripe_data(customer, api_key=api_key)
        if payment_method is not None:
            djstripe_models.PaymentMethod.sync_from_stripe_data(payment_method, api_key=api_key)
        if subscription is not None:
            djstripe_models.Subscription.sync_from_stripe_data(subscription, api_key=api_key)
        if invoice is not None:
            djstripe_models.Invoice.sync_from_stripe_data(invoice, api_key=api_key)
        if event is not None:
            return djstripe_models.Event.sync_from_stripe_data(event, api_key=api_key)
    return None


def live_subscriptions(customer_id: str | None) -> list[Any]:
    """The customer's subscriptions that have not ended (they may still charge)."""
    if not customer_id:
        return []
    return [
        s
        for s in stripe_calls.subscriptions_of(customer_id=customer_id)
        if s["status"] not in stripe_client.ENDED_STATUSES
    ]
