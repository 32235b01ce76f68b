"""One metered call, as both the DRF permission and /v1/authorize make it."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Agent, Tier
from billing.metering.ratelimit import CALLS_REMAINING_ATTR, RateLimitState, rate_limit
from billing.metering.services import MeterResult, meter_call
from billing.metering.tiers import tier_limits
from lithtrix import metrics
from lithtrix.errors import OverLimitError

UPGRADE_URL = "/v1/billing/setup"


def meter_request(
    request: HttpRequest, *, agent: Agent
) -> tuple[MeterResult, RateLimitState | None]:
    """Rate-limit, then meter, one call by ``agent``.

    Raises RateLimitExceededError (429) or OverLimitError (402); in both cases the
    call is not counted against the lifetime cap.
    """
    state = rate_limit(request, agent=agent)
    result = meter_call(agent_id=agent.pk)
    metrics.METERED_CALLS.labels(outcome="allowed" if result.allowed else "over_limit").inc()
    if not result.allowed:
        raise OverLimitError(extra={"upgrade_url": UPGRADE_URL})
    if agent.tier == Tier.FREE:
        # X-Calls-Remaining on the 200 (RateLimitHeadersMiddleware); Pro has no cap.
        limit, calls = tier_limits(Tier.FREE).call_limit, result.calls_total
        assert limit is not None and calls is not None  # Free has a cap; allowed calls count
        remaining = max(0, limit - calls)
        setattr(getattr(request, "_request", request), CALLS_REMAINING_ATTR, remaining)
    return result, state
