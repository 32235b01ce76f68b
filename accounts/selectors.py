"""Reads about agents for the staff admin. Each is a small, fixed number of indexed queries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import Agent, Tier
from billing.metering.tiers import over_limit_condition
from billing.models import DailyUsage


def utc_today() -> dt.date:
    # DailyUsage rows are UTC days, whatever TIME_ZONE says.
    return timezone.now().astimezone(dt.UTC).date()


@dataclass(frozen=True)
class UsageOverview:
    agents_by_tier: dict[str, int]
    over_limit: int
    calls_today: int
    calls_last_7_days: int
    registrations_last_7_days: int

    @property
    def agents_total(self) -> int:
        return sum(self.agents_by_tier.values())


def usage_overview() -> UsageOverview:
    """Agents per tier, over-limit agents, metered calls and registrations (four queries).

    Each query is an index-only or index range scan: (tier, calls_total) for the
    first two, DailyUsage.date and Agent.created_at for the others.
    """
    counts = dict(Agent.objects.order_by().values_list("tier").annotate(n=Count("*")))
    today = utc_today()
    calls = DailyUsage.objects.filter(date__gte=today - dt.timedelta(days=6)).aggregate(
        week=Sum("calls"), today=Sum("calls", filter=Q(date=today))
    )
    return UsageOverview(
        agents_by_tier={tier: counts.get(tier, 0) for tier in Tier.values},
        over_limit=Agent.objects.filter(over_limit_condition()).count(),
        calls_today=calls["today"] or 0,
        calls_last_7_days=calls["week"] or 0,
        registrations_last_7_days=Agent.objects.filter(
            created_at__gte=timezone.now() - dt.timedelta(days=7)
        ).count(),
    )


@dataclass(frozen=True)
class DailyCalls:
    date: dt.date
    calls: int
    percent: int  # of the busiest day in the period, for the bar chart


def agent_daily_usage(*, agent: Agent, days: int = 30) -> list[DailyCalls]:
    """Metered calls per UTC day for the last ``days`` days, oldest first, zeros filled in."""
    today = utc_today()
    first = today - dt.timedelta(days=days - 1)
    calls = dict(
        DailyUsage.objects.filter(agent=agent, date__gte=first)
        .order_by()
        .values_list("date", "calls")
    )
    busiest = max(calls.values(), default=0)
    return [
        DailyCalls(
            date=day,
            calls=calls.get(day, 0),
            percent=round(100 * calls.get(day, 0) / busiest) if busiest else 0,
        )
        for day in (first + dt.timedelta(days=n) for n in range(days))
    ]


def agent_profile(agent: Agent) -> dict[str, str]:
    """GET /v1/me's body (AgentProfileSerializer documents it).

    Built directly: /v1/me answers on every call, and instantiating a DRF
    serializer deep-copies its fields each time (a tenth of the request's CPU).
    """
    return {
        "agent_id": str(agent.id),
        "agent_name": agent.agent_name,
        "owner_identifier": agent.owner_identifier,
        "tier": agent.tier,
    }
