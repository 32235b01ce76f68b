"""Bearer authentication with ltx_ API keys."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.models import Agent
from billing.metering import ratelimit
from keys import hints, selectors
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey
from lithtrix.errors import ApiError, InvalidApiKeyError, RateLimitExceededError


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented_key_hash(header: str) -> str:
    """The hash of the well-formed ltx_ key in an Authorization header value, else
    InvalidApiKeyError (without any database query)."""
    token = bearer_token(header)
    if token is None or not is_well_formed(token):
        raise InvalidApiKeyError()
    return hash_key(token)


def authenticate_key_hash(hashed_key: str) -> tuple[Agent, ApiKey]:
    """Agent and key for a presented key's hash (one indexed query), or InvalidApiKeyError."""
    api_key = selectors.active_api_key_with_agent_by_hash(hashed_key=hashed_key)
    if api_key is None:
        raise InvalidApiKeyError()
    return api_key.agent, api_key


def authenticate_key(header: str) -> tuple[Agent, ApiKey]:
    """Agent and key for an Authorization header value, or InvalidApiKeyError.

    Missing, malformed, unknown, rotated and revoked keys are indistinguishable to
    the caller. A key without the ltx_ shape costs no database query; any other
    costs one indexed query.
    """
    return authenticate_key_hash(presented_key_hash(header))


class ApiKeyAuthentication(BaseAuthentication):
    """The default for every /v1 endpoint; public endpoints set authentication_classes = [].

    With a key hint (keys.hints) for the presented key, the view's per-agent rate
    limit is counted while the key lookup is on its way to the database, so the two
    round trips overlap. The lookup still decides: an unknown or revoked key gets
    401 (the count stays with the agent the hint named, once), a tier that changed
    makes the throttle count again under the right tier, and a 429 is still raised
    by the throttle, after authentication and permissions, as DRF orders them.
    """

    def authenticate(self, request: Request) -> tuple[Agent, ApiKey]:
        hashed_key = presented_key_hash(request.META.get("HTTP_AUTHORIZATION", ""))
        hint = hints.get(hashed_key) if hints.enabled() else None
        overlap = None
        if hint is not None and _rate_limited_view(request):

            def overlap() -> None:
                _count_rate_limit_early(request, hint)

        api_key = selectors.active_api_key_with_agent_by_hash(
            hashed_key=hashed_key, while_waiting=overlap
        )
        if api_key is None:
            if hint is not None:
                hints.forget(hashed_key)
            raise InvalidApiKeyError()
        agent = api_key.agent
        if hint is None or hint.agent_id != agent.pk or hint.tier != agent.tier:
            if overlap is not None:
                ratelimit.forget_decision(request)  # counted as the wrong tier: again
            if hints.enabled():
                hints.remember(hashed_key, agent)
        return agent, api_key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def _rate_limited_view(request: Request) -> bool:
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return view is not None and any(
        issubclass(throttle, ratelimit.RateLimitThrottle)
        for throttle in getattr(view, "throttle_classes", ())
    )


def _count_rate_limit_early(request: Request, hint: hints.KeyHint) -> None:
    try:
        ratelimit.rate_limit(request, agent=Agent(id=hint.agent_id, tier=hint.tier))
    except RateLimitExceededError:
        pass  # decided and kept: the throttle raises it in its turn
    except ApiError:
        ratelimit.forget_decision(request)  # e.g. the store failed: the throttle decides
