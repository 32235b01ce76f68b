"""Reads for billing and usage: what an agent's tier allows and what it has used.

The staff console's usage reads (the index summary, an agent's calls per day) are
here too: each is a small, fixed number of indexed queries.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import Agent, Tier
from billing.metering.tiers import over_limit_condition, tier_limits
from billing.models import DailyUsage
from lithtrix.core.replica import read_from_replica

USAGE_DAYS = 7


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


def usage_summary(*, agent: Agent, today: datetime.date | None = None) -> UsageSummary:
    """Lifetime, this UTC month's and the last 7 UTC days' metered calls (oldest day first)."""
    # calls_total is the counter metering just moved: the primary's. The daily rows
    # are history, read from the replica (they may trail by its lag).
    agent = _fresh(agent)
    today = today or timezone.now().date()
    first_day = today - datetime.timedelta(days=USAGE_DAYS - 1)
    month_start = today.replace(day=1)

    def history(using: str) -> tuple[int, dict[datetime.date, int]]:
        rows = DailyUsage.objects.using(using).filter(agent_id=agent.pk)
        month = rows.filter(date__gte=month_start, date__lte=today).aggregate(total=Sum("calls"))
        days = rows.filter(date__gte=first_day, date__lte=today).values_list("date", "calls")
        return month["total"] or 0, dict(days)

    calls_this_month, by_date = read_from_replica(history)
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


# --- the staff console ----------------------------------------------------------------


def utc_today() -> datetime.date:
    # DailyUsage rows are UTC days, whatever TIME_ZONE says.
    return timezone.now().astimezone(datetime.UTC).date()


@dataclass(frozen=True)
class UsageOverview:
    agents_by_tier: dict[str, int]
    over_limit: int
    calls_today: int
    calls_last_7_days: int
    refused_today: int
    registrations_last_7_days: int
    deleted: int  # tombstones, counted apart from every figure above

    @property
    def agents_total(self) -> int:
        return sum(self.agents_by_tier.values())


def usage_overview() -> UsageOverview:
    """Live agents per tier, over-limit agents, metered and refused calls,
    registrations, and deleted agents apart (five queries, on the replica if any).

    Each query is an index or index range scan: (tier, calls_total) for the first
    two, DailyUsage.date and Agent.created_at for the others; tombstones are few.
    """
    return read_from_replica(_usage_overview)


def _usage_overview(using: str) -> UsageOverview:
    agents = Agent.objects.using(using)
    live = agents.filter(deleted_at__isnull=True)
    counts = dict(live.order_by().values_list("tier").annotate(n=Count("*")))
    today = utc_today()
    calls = (
        DailyUsage.objects.using(using)
        .filter(date__gte=today - datetime.timedelta(days=6))
        .aggregate(
            week=Sum("calls"),
            today=Sum("calls", filter=Q(date=today)),
            refused_today=Sum("refused", filter=Q(date=today)),
        )
    )
    return UsageOverview(
        agents_by_tier={tier: counts.get(tier, 0) for tier in Tier.values},
        over_limit=live.filter(over_limit_condition()).count(),
        calls_today=calls["today"] or 0,
        calls_last_7_days=calls["week"] or 0,
        refused_today=calls["refused_today"] or 0,
        registrations_last_7_days=live.filter(
            created_at__gte=timezone.now() - datetime.timedelta(days=7)
        ).count(),
        deleted=agents.filter(deleted_at__isnull=False).count(),
    )


@dataclass(frozen=True)
class DailyCalls:
    date: datetime.date
    calls: int
    refused: int  # calls refused (402) at the cap that day
    # Of the busiest day in the period (calls and refusals), for the bar chart.
    percent: int
    refused_percent: int


def agent_daily_usage(*, agent: Agent, days: int = 30) -> list[DailyCalls]:
    """Metered and refused calls per UTC day for the last ``days`` days, oldest first,
    zeros filled in."""
    today = utc_today()
    first = today - datetime.timedelta(days=days - 1)
    rows = {
        date: (calls, refused)
        for date, calls, refused in DailyUsage.objects.filter(agent=agent, date__gte=first)
        .order_by()
        .values_list("date", "calls", "refused")
    }
    busiest = max((calls + refused for calls, refused in rows.values()), default=0)

    def share(n: int) -> int:
        return round(100 * n / busiest) if busiest else 0

    days_back = (first + datetime.timedelta(days=n) for n in range(days))
    return [
        DailyCalls(
            date=day,
            calls=calls,
            refused=refused,
            percent=share(calls),
            refused_percent=share(refused),
        )
        for day, (calls, refused) in ((day, rows.get(day, (0, 0))) for day in days_back)
    ]
