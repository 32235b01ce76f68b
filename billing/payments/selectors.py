"""Reads of the Stripe side, from dj-stripe's mirror (never a Stripe call)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from djstripe import models as djstripe_models

from billing.payments import stripe_client


def subscription_cancel_at(subscription: Mapping[str, Any]) -> datetime.datetime | None:
    """When a subscription set to cancel ends; None when no cancellation is pending.

    Stripe sets ``cancel_at`` with cancel_at_period_end; without it (older API
    versions, localstripe) the end of the current period is the date, found on
    the subscription or (API versions since 2025-03) on its items.
    """
    if not (subscription.get("cancel_at_period_end") or subscription.get("cancel_at")):
        return None
    timestamp = subscription.get("cancel_at") or subscription.get("current_period_end")
    if not timestamp:
        items = (subscription.get("items") or {}).get("data") or []
        timestamp = max((item.get("current_period_end") or 0 for item in items), default=0)
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.UTC)


def paying_subscription_ids(*, customer_id: str | None) -> list[str]:
    """The customer's mirrored subscriptions that entitle to Pro (Stripe charges for
    them, and reconciliation keeps their agent Pro), oldest id first."""
    if not customer_id:
        return []
    mirrored = djstripe_models.Subscription.objects.filter(customer_id=customer_id)
    return sorted(
        s.id
        for s in mirrored.only("id", "stripe_data")
        if s.stripe_data.get("status") in stripe_client.ENTITLED_STATUSES
    )


def pending_cancel_at(*, customer_id: str | None) -> datetime.datetime | None:
    """The end date of the customer's Pro subscription when its cancellation is pending.

    None without a customer, without a live subscription, or when one live
    subscription is not set to cancel (Pro then continues).
    """
    if not customer_id:
        return None
    mirrored = djstripe_models.Subscription.objects.filter(customer_id=customer_id)
    live = [
        s.stripe_data
        for s in mirrored.only("stripe_data")
        if s.stripe_data.get("status") in stripe_client.ENTITLED_STATUSES
    ]
    dates = [subscription_cancel_at(data) for data in live]
    known = [at for at in dates if at is not None]
    if not dates or len(known) < len(dates):
        return None
    return max(known)
