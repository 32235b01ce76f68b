"""Bearer authentication with ltx_ API keys, and the limit on failed attempts."""

from __future__ import annotations

import contextlib
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.models import Agent
from keys import hints, selectors
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey
from lithtrix.core import metrics, ratelimit
from lithtrix.core.exceptions import ApiError, InvalidApiKeyError
from lithtrix.core.http import bearer_token

# --- failed authentications per client IP -------------------------------------
#
# A well-formed junk key costs a database query to refuse. Failures are counted
# per client IP (django-ratelimit on the shared cache, only on failure: a valid key
# costs no extra round trip). Past the auth_failures rate the address is blocked until its window
# ends, and while blocked a key is looked up only if it authenticated recently
# (anywhere: a marker in the shared cache, written once per key per process and
# hour, read only while blocked). Others get 429 without a query.
#
# The trade-off: a key that has authenticated in the last
# LITHTRIX_AUTH_SEEN_VALID_SECONDS is never refused by this limit. A valid key
# that has not (a key issued moments ago, or unused for a week) sent from an
# address that is flooding junk waits for that address's window to end (429 with
# Retry-After, at most one window) - it is never locked out for longer.

AUTH_FAILURE_SCOPE = "auth_failures"
_SEEN_VALID_LOCALLY_SECONDS = 3600
_MAX_TRACKED = 100_000  # entries per process in each map below, then it starts over

_blocked_until: dict[str, float] = {}  # ip bucket -> deadline, ratelimit.clock() (this process)
_seen_valid_until: dict[str, float] = {}  # key digest -> monotonic deadline (this process)


def _seen_valid_key(digest: str) -> str:
    return f"authok:{digest}"


def _remember_valid(digest: str) -> None:
    now = time.monotonic()
    if _seen_valid_until.get(digest, 0.0) > now:
        return
    if len(_seen_valid_until) >= _MAX_TRACKED:
        _seen_valid_until.clear()
    _seen_valid_until[digest] = now + _SEEN_VALID_LOCALLY_SECONDS
    # A failure is reported by the guard; the key is valid all the same.
    with contextlib.suppress(Exception):
        ratelimit.guarded_cache_call(
            lambda: cache.set(
                _seen_valid_key(digest), 1, timeout=settings.LITHTRIX_AUTH_SEEN_VALID_SECONDS
            )
        )


def _seen_valid(digest: str) -> bool:
    if _seen_valid_until.get(digest, 0.0) > time.monotonic():
        return True
    try:
        return bool(ratelimit.guarded_cache_call(lambda: cache.get(_seen_valid_key(digest))))
    except Exception:
        return False  # the cache is down: while blocked, only locally known keys pass


def _blocked_for(bucket: str) -> float:
    """Seconds ``bucket`` stays blocked (0: not blocked)."""
    deadline = _blocked_until.get(bucket)
    if deadline is None:
        return 0.0
    left = deadline - ratelimit.clock()
    if left <= 0:
        _blocked_until.pop(bucket, None)
        return 0.0
    return left


def _count_failure(request: HttpRequest, bucket: str) -> None:
    try:
        state = ratelimit.count_client(request, AUTH_FAILURE_SCOPE)
    except Exception:
        return  # the cache is down: failures go uncounted (fail open, logged by the guard)
    if state is not None and state.limited:
        if len(_blocked_until) >= _MAX_TRACKED:
            _blocked_until.clear()
        _blocked_until[bucket] = ratelimit.clock() + state.reset


def spent_key_owner(header: str) -> uuid.UUID | None:
    """The agent the key in an Authorization header value was issued to, whether or
    not it still works; None for a malformed or unknown key (Idempotency-Key replays
    of requests whose key they killed: LITHTRIX_IDEMPOTENCY_CREDENTIAL_OWNER)."""
    try:
        hashed_key = presented_key_hash(header)
    except ApiError:
        return None
    return selectors.key_agent_id_by_hash(hashed_key=hashed_key)


def presented_key_hash(header: str) -> str:
    """The hash of the well-formed ltx_ key in an Authorization header value, else
    InvalidApiKeyError (without any database query)."""
    token = bearer_token(header)
    if token is None or not is_well_formed(token):
        raise InvalidApiKeyError()
    return hash_key(token)


def authenticate_key_hash(
    hashed_key: str, *, request: HttpRequest | Request
) -> tuple[Agent, ApiKey]:
    """Agent and key for a presented key's hash (``presented_key_hash``), or
    InvalidApiKeyError.

    Missing, malformed, unknown, rotated and revoked keys are indistinguishable to
    the caller. The lookup costs one indexed query, unless the request's client
    address is blocked for failing too often: then RateLimitExceededError (429)
    without a query, for a key not seen valid recently.
    """
    bucket = ratelimit.client_network(AUTH_FAILURE_SCOPE, request)
    digest = hashed_key[:32]
    blocked = _blocked_for(bucket)
    if blocked and not _seen_valid(digest):
        metrics.RATE_LIMIT_REFUSALS.labels(bucket=AUTH_FAILURE_SCOPE).inc()
        limit, _period = ratelimit.parse_rate(ratelimit.throttle_rate(AUTH_FAILURE_SCOPE))
        # The limit that refused, like every other 429.
        state = ratelimit.RateLimitState(
            limit=limit, remaining=0, reset=max(1, round(blocked)), limited=True
        )
        raise state.exceeded(
            "Too many failed authentications from this address. See Retry-After header."
        )
    api_key = selectors.working_api_key_with_agent_by_hash(hashed_key=hashed_key)
    if api_key is None:
        _count_failure(request, bucket)
        raise InvalidApiKeyError()
    _remember_valid(digest)
    return api_key.agent, api_key


def reset_failure_limits() -> None:
    """Forget blocked addresses and keys seen valid (tests)."""
    _blocked_until.clear()
    _seen_valid_until.clear()


def authenticate_request(request: HttpRequest | Request) -> tuple[Agent, ApiKey]:
    """Agent and key of a request's ``Authorization: Bearer ltx_...``, or the error.

    Always the full key lookup (one indexed query). The key hint (keys.hints) is
    kept up to date for /v1/authorize, which may skip the lookup.
    """
    hashed_key = presented_key_hash(request.META.get("HTTP_AUTHORIZATION", ""))
    try:
        agent, api_key = authenticate_key_hash(hashed_key, request=request)
    except ApiError:
        if hints.enabled():
            hints.forget(hashed_key)
        raise
    if hints.enabled():
        hints.remember(hashed_key, agent)
    return agent, api_key


class ApiKeyAuthentication(BaseAuthentication):
    """The default for every /v1 endpoint; public endpoints set authentication_classes = [].

    authenticate_request on DRF's request; the view's rate limit follows as DRF
    orders it (throttles after authentication and permissions).
    """

    def authenticate(self, request: Request) -> tuple[Agent, ApiKey]:
        return authenticate_request(request)

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"
