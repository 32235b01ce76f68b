"""GET /v1/billing's read: the tier and usage (metering) with the Stripe side (payments).

At billing's root because it composes both systems; metering never imports payments.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from accounts.models import Agent
from billing.metering.tiers import tier_limits
from billing.payments import selectors as payments_selectors


@dataclass(frozen=True)
class BillingSummary:
    tier: str
    calls_total: int
    call_limit: int | None
    over_limit: bool
    stripe_customer_id: str | None
    cancel_at: datetime.datetime | None = None


def _fresh(agent: Agent) -> Agent:
    # The counter moves with every metered call; read it as it is now.
    return Agent.objects.only("tier", "calls_total", "stripe_customer_id").get(pk=agent.pk)


def billing_summary(*, agent: Agent) -> BillingSummary:
    agent = _fresh(agent)
    call_limit = tier_limits(agent.tier).call_limit
    return BillingSummary(
        tier=agent.tier,
        calls_total=agent.calls_total,
        call_limit=call_limit,
        over_limit=call_limit is not None and agent.calls_total >= call_limit,
        stripe_customer_id=agent.stripe_customer_id,
        cancel_at=payments_selectors.pending_cancel_at(customer_id=agent.stripe_customer_id),
    )
