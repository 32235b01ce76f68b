"""Reads for billing and usage: what an agent's tier allows and what it has used."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Sum
from django.utils import timezone

from accounts.models import Agent
from billing.metering.tiers import tier_limits
from billing.models import DailyUsage
from billing.payments import selectors as payments_selectors

USAGE_DAYS = 7


@dataclass(frozen=True)
class BillingSummary:
    tier: str
    calls_total: int
    call_limit: int | None
    over_limit: bool
    stripe_customer_id: str | None
    cancel_at: datetime.datetime | None = None


@dataclass(frozen=True)
class DayUsage:
    date: datetime.date
    calls: int


@dataclass(frozen=True)
class UsageSummary:
    calls_total: int
    calls_this_month: int
    calls_remaining: int | None
    daily_breakdown: list[DayUsage]


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


def usage_summary(*, agent: Agent, today: datetime.date | None = None) -> UsageSummary:
    """Lifetime, this UTC month's and the last 7 UTC days' metered calls (oldest day first)."""
    agent = _fresh(agent)
    today = today or timezone.now().date()
    first_day = today - datetime.timedelta(days=USAGE_DAYS - 1)
    month_start = today.replace(day=1)
    rows = DailyUsage.objects.filter(agent=agent)
    calls_this_month = (
        rows.filter(date__gte=month_start, date__lte=today).aggregate(total=Sum("calls"))["total"]
        or 0
    )
    by_date = dict(rows.filter(date__gte=first_day, date__lte=today).values_list("date", "calls"))
    call_limit = tier_limits(agent.tier).call_limit
    return UsageSummary(
        calls_total=agent.calls_total,
        calls_this_month=calls_this_month,
        calls_remaining=None if call_limit is None else max(0, call_limit - agent.calls_total),
        daily_breakdown=[
            DayUsage(date=day, calls=by_date.get(day, 0))
            for day in (first_day + datetime.timedelta(days=n) for n in range(USAGE_DAYS))
        ],
    )
