"""One metered call, as both the DRF permission and /v1/authorize make it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.http import HttpRequest

from accounts.models import Agent, Tier
from billing.metering.services import MeterResult, meter_call
from billing.metering.tiers import tier_limits
from keys import hints
from keys.authentication import authenticate_key_hash, presented_key_hash
from lithtrix.core import metrics
from lithtrix.core.exceptions import ApiError, OverLimitError, RateLimitExceededError
from lithtrix.core.notes import RateLimitState, RequestNotes
from lithtrix.core.ratelimit import forget_decision, limit_agent

UPGRADE_URL = "/v1/billing/setup"


def meter_request(
    request: HttpRequest, *, agent: Agent
) -> tuple[MeterResult, RateLimitState | None]:
    """Rate-limit, then meter, one call by ``agent``.

    Raises RateLimitExceededError (429) or OverLimitError (402); in both cases the
    call is not counted against the lifetime cap.
    """
    state = limit_agent(request, agent_id=agent.pk, tier=agent.tier)
    result = meter_call(agent_id=agent.pk)
    metrics.METERED_CALLS.labels(outcome="allowed" if result.allowed else "over_limit").inc()
    if not result.allowed:
        raise OverLimitError(extra={"upgrade_url": UPGRADE_URL})
    _note_calls_remaining(request, agent.tier, result)
    return result, state


def _note_calls_remaining(request: HttpRequest, tier: str, result: MeterResult) -> None:
    limit = tier_limits(Tier.FREE).call_limit
    if tier == Tier.FREE and limit is not None and result.calls_total is not None:
        # X-Calls-Remaining on the 200 (RateLimitHeadersMiddleware); Pro has no cap.
        RequestNotes.of(request).calls_remaining = max(0, limit - result.calls_total)


@dataclass(frozen=True)
class MeteredCall:
    agent_id: uuid.UUID
    tier: str
    result: MeterResult
    rate_limit: RateLimitState | None


def meter_presented_key(request: HttpRequest, *, authorization: str) -> MeteredCall:
    """Authenticate an Authorization header value, rate-limit, meter: one metered call.

    Raises InvalidApiKeyError (401), RateLimitExceededError (429) or OverLimitError
    (402). With a key hint (keys.hints) the key lookup is skipped: the metering
    statement re-checks the key itself and only counts the call while the key still
    authenticates, so a call is allowed on the database's word alone; anything
    else (an unknown, revoked or rotated key, the cap, a 429, a tier that changed)
    is decided by the full lookup that follows, exactly as without a hint.
    """
    hashed_key = presented_key_hash(authorization)
    hint = hints.get(hashed_key) if hints.enabled() else None
    if hint is not None:
        try:
            state = limit_agent(request, agent_id=hint.agent_id, tier=hint.tier)
        except RateLimitExceededError:
            pass  # the full lookup first: an invalid key gets 401, not 429
        else:
            result = meter_call(agent_id=hint.agent_id, hashed_key=hashed_key, tier=hint.tier)
            if result.allowed:
                metrics.METERED_CALLS.labels(outcome="allowed").inc()
                _note_calls_remaining(request, hint.tier, result)
                return MeteredCall(hint.agent_id, hint.tier, result, state)
        hints.forget(hashed_key)
    try:
        agent, _api_key = authenticate_key_hash(hashed_key, request=request)
    except ApiError:
        if hint is not None:
            # Counted for the hinted agent; the refusal carries no agent's limit.
            forget_decision(request)
        raise
    if hint is not None and hint.tier != agent.tier:
        # Counted under the tier the hint named: count it again under the real one.
        forget_decision(request)
    result, state = meter_request(request, agent=agent)
    if hints.enabled():
        hints.remember(hashed_key, agent)
    return MeteredCall(agent.pk, agent.tier, result, state)
