"""Tier limits, from settings. The one place that says what a tier may do.

Used by metering, rate limiting, /v1/billing, /v1/usage and the admin alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from accounts.models import Tier
from lithtrix.core.ratelimit import agent_scope, throttle_rate


@dataclass(frozen=True)
class TierLimits:
    call_limit: int | None  # lifetime metered calls; None = unlimited
    rate: str  # its throttle scope's rate (agent_free, agent_pro), e.g. "60/m"


def tier_limits(tier: str) -> TierLimits:
    rate = throttle_rate(agent_scope(tier))
    if tier == Tier.PRO:
        return TierLimits(call_limit=None, rate=rate)
    return TierLimits(call_limit=settings.LITHTRIX_FREE_CALL_LIMIT, rate=rate)


def over_limit_condition() -> Q:
    """Agents whose lifetime cap is reached, as an (indexed) SQL condition."""
    return Q(tier=Tier.FREE, calls_total__gte=settings.LITHTRIX_FREE_CALL_LIMIT)
