"""One metered call, as both the DRF permission and /v1/authorize make it."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Agent
from billing.metering.ratelimit import RateLimitState, rate_limit
from billing.metering.services import MeterResult, meter_call
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
    return result, state
