"""Rate limits, all under one face: DRF's throttle scopes.

Every limit is a scope with its rate in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
(agent_free, agent_pro, register, openapi, billing_config, secret_scanning,
auth_failures); a view names the scope its keyless callers count in
(``throttle_scope``), and ScopedRateThrottle, DRF's default throttle, decides.
Two counters lie underneath:

- per agent (agent_<tier>): the project's own fixed window, counted by one atomic
  Redis script (``count_in_bucket``): one round trip on the hot path, exact
  across every worker and host;
- per client address (every other scope): django-ratelimit's ``get_usage``,
  keyed by the address, an IPv6 client by its /64.

Both count fixed windows whose start is staggered per bucket, so every agent's
minute does not end at the same second. A limit is decided after DRF has
authenticated the request (a decorator on dispatch would see no agent yet) and
before a call is metered: a refused call (429) is never counted against the cap.

When the cache cannot be reached or stalls, the limit fails open (the request
goes on, without RateLimit-* headers) or, with LITHTRIX_RATE_LIMIT_ON_FAILURE=
closed, answers 503. After a failure the cache is not tried again for
LITHTRIX_RATE_LIMIT_BREAKER_SECONDS, so a dead Redis does not cost every request
its socket timeout. The lifetime cap lives in the database and is exact either way.

Each request's decision is kept in its RequestNotes, so it is made once per
request and RateLimitHeadersMiddleware can put the RateLimit-* headers on
whatever answer follows, errors included.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from lithtrix.core import metrics, outages
from lithtrix.core.exceptions import ServiceUnavailableError
from lithtrix.core.http import client_ip, django_request
from lithtrix.core.notes import RateLimitState, RequestNotes

if TYPE_CHECKING:  # rest_framework.views loads the throttle classes: this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

AGENT_GROUP = "agent"
# One IPv6 client usually holds a whole /64; counting per address would let it
# register without limit. IPv4 addresses count one by one.
IPV6_PREFIX = 64
# A window's counter outlives the window a little: a request counted in its last
# second still finds it.
_EXPIRY_MARGIN = 1

T = TypeVar("T")

_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# "60/m", "100/5m"; a unit may be spelled out ("10/hour"): its first letter counts.
_RATE = re.compile(r"^(\d+)/(\d*)([smhd])[a-z]*$")


@functools.cache
def parse_rate(rate: str) -> tuple[int, int]:
    """A rate setting -> (requests, period in seconds): "60/m" -> (60, 60), "100/5m" ->
    (100, 300), "1000/d" -> (1000, 86400). The one parser every rate goes through."""
    match = _RATE.match(rate.strip())
    if not match:
        raise ValueError(f"not a rate: {rate!r} (expected e.g. 60/m, 100/5m, 1000/d)")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * _PERIOD_SECONDS[unit]


def throttle_rate(scope: str) -> str:
    """The rate of a throttle scope (REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]).

    A missing or malformed rate raises here, before any count: a configuration
    error, never mistaken for a cache outage.
    """
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
    if not isinstance(rate, str):
        raise ImproperlyConfigured(
            f"No rate for throttle scope {scope!r} in REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']."
        )
    parse_rate(rate)
    return rate


def agent_scope(tier: str) -> str:
    """The throttle scope of an agent on ``tier``: agent_free, agent_pro."""
    return f"{AGENT_GROUP}_{tier}"


def clock() -> float:
    return time.time()  # tests replace this with a controllable clock


def window_end(bucket: str, period: int, now: int) -> int:
    """The second at which the current window of ``bucket`` ends (>= now).

    Windows are ``period`` long and start at an offset in [0, period) fixed per
    bucket, so buckets roll over at different seconds.
    """
    if period == 1:
        return now
    end = now - now % period + zlib.crc32(bucket.encode()) % period
    return end + period if end < now else end


def _cache_key(group: str, bucket: str, limit: int, period: int, end: int) -> str:
    # The rate is part of the name: a changed rate (an upgrade) starts a fresh count.
    # The bucket is hashed: it may come from a client-supplied header.
    digest = hashlib.sha256(f"{bucket}|{limit}/{period}".encode()).hexdigest()[:32]
    return f"rl:{group}:{digest}:{end}"


# --- the circuit breaker in front of the cache --------------------------------

_breaker = {"open_until": 0.0}


def _breaker_open() -> bool:
    return time.monotonic() < _breaker["open_until"]


class StoreSkipped(Exception):
    """The breaker is open: the cache failed moments ago and is not tried now."""


def guarded_cache_call(call: Callable[[], T]) -> T:
    """``call()`` on the shared cache, behind the breaker.

    While the breaker is open it raises StoreSkipped without trying; a failure
    opens the breaker for LITHTRIX_RATE_LIMIT_BREAKER_SECONDS, is reported (one
    log line per incident), and is raised again for the caller to decide.
    """
    if _breaker_open():
        raise StoreSkipped()
    try:
        result = call()
    except Exception as exc:  # the cache backends' errors have no common base class
        seconds = settings.LITHTRIX_RATE_LIMIT_BREAKER_SECONDS
        _breaker["open_until"] = time.monotonic() + seconds
        action = (
            "rate limits fail open"
            if settings.LITHTRIX_RATE_LIMIT_ON_FAILURE != "closed"
            else "rate-limited requests answer 503 (LITHTRIX_RATE_LIMIT_ON_FAILURE=closed)"
        )
        outages.report_failure("cache", exc, action=f"{action}; tried again in {seconds:g} s")
        raise
    outages.report_success("cache")
    return result


def reset_breaker() -> None:
    """Close the breaker (tests)."""
    _breaker["open_until"] = 0.0


# --- the two counters ------------------------------------------------------------


def _count(key: str, timeout: int) -> int:
    """Add one to the counter ``key`` (created with ``timeout`` seconds to live)."""
    cache = caches["default"]
    if hasattr(cache, "count_hit"):  # lithtrix's RedisCache: one round trip
        return cache.count_hit(key, timeout)
    # A process-local cache (single process only): add, then increment under its lock.
    for _attempt in range(2):
        cache.add(key, 0, timeout)
        try:
            return cache.incr(key)
        except ValueError:  # expired between the two calls; nothing was counted
            continue
    raise RuntimeError("counter expired twice in a row")


def count_in_bucket(group: str, bucket: str, rate: str) -> RateLimitState:
    """Count one request in ``bucket`` of ``group`` under ``rate``: one round trip.

    Raises when the cache fails or its breaker is open (see ``guarded_cache_call``).
    """
    limit, period = parse_rate(rate)
    now = int(clock())
    end = window_end(bucket, period, now)
    key = _cache_key(group, bucket, limit, period, end)
    count = guarded_cache_call(lambda: _count(key, period + _EXPIRY_MARGIN))
    # The window covers every second up to ``end``; the time left rounded up to a
    # whole second is end - now + 1.
    return RateLimitState(
        limit=limit,
        remaining=max(0, limit - count),
        reset=max(1, end - now + 1),
        limited=count > limit,
    )


def ip_bucket(ip: str | None) -> str:
    """The rate-limit bucket of a client address: itself, or its /64 for IPv6."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def client_network(group: str, request: HttpRequest) -> str:
    """django-ratelimit's key for a client: its address, or its /64 for IPv6."""
    return ip_bucket(client_ip(request))


def count_client(request: HttpRequest, scope: str) -> RateLimitState | None:
    """Count one request of the client's address in ``scope`` (django-ratelimit).

    None when django-ratelimit counted nothing (RATELIMIT_ENABLE off). Raises when
    the cache fails or its breaker is open (see ``guarded_cache_call``).
    """
    rate = throttle_rate(scope)
    request = django_request(request)
    usage = guarded_cache_call(
        lambda: get_usage(request, group=scope, key=client_network, rate=rate, increment=True)
    )
    if usage is None:
        return None
    # As for the agent's windows: the window includes the second it ends at.
    return RateLimitState(
        limit=usage["limit"],
        remaining=max(0, usage["limit"] - usage["count"]),
        reset=max(1, usage["time_left"] + 1),
        limited=usage["should_limit"],
    )


# --- deciding a request's limit --------------------------------------------------


def _decide(request: HttpRequest, scope: str, count: Callable[[], RateLimitState | None]) -> None:
    """Count this request once (later calls keep the first decision) and note it.

    A count that cannot be made fails open (no decision) or, with
    LITHTRIX_RATE_LIMIT_ON_FAILURE=closed, raises ServiceUnavailableError (503).
    """
    notes = RequestNotes.of(request)
    if notes.rate_limit_decided:
        return
    try:
        state = count()
    except Exception as exc:
        fail_open = settings.LITHTRIX_RATE_LIMIT_ON_FAILURE != "closed"
        metrics.RATE_LIMIT_STORE_FAILURES.labels(action="open" if fail_open else "closed").inc()
        if not fail_open:
            retry_after = max(1, round(settings.LITHTRIX_RATE_LIMIT_BREAKER_SECONDS))
            raise ServiceUnavailableError(
                "The rate-limit store is unavailable; retry later.",
                headers={"Retry-After": str(retry_after)},
            ) from exc
        state = None
    notes.rate_limit_decided, notes.rate_limit = True, state
    if state is not None and state.limited:
        metrics.RATE_LIMIT_REFUSALS.labels(bucket=scope).inc()


def decide_agent(request: HttpRequest, *, agent_id: object, tier: str) -> RateLimitState | None:
    """This request's decision under its agent's tier (counted once per request)."""
    scope = agent_scope(tier)
    rate = throttle_rate(scope)
    _decide(request, scope, lambda: count_in_bucket(AGENT_GROUP, str(agent_id), rate))
    return RequestNotes.of(request).rate_limit


def decide_client(request: HttpRequest, *, scope: str) -> RateLimitState | None:
    """This request's decision in the client address's bucket of ``scope``."""
    throttle_rate(scope)  # a missing or malformed rate raises before the count
    _decide(request, scope, lambda: count_client(request, scope))
    return RequestNotes.of(request).rate_limit


def limit_agent(request: HttpRequest, *, agent_id: object, tier: str) -> RateLimitState | None:
    """decide_agent, raising RateLimitExceededError (429, Retry-After) when limited."""
    state = decide_agent(request, agent_id=agent_id, tier=tier)
    if state is not None and state.limited:
        raise state.exceeded()
    return state


def forget_decision(request: HttpRequest) -> None:
    """Drop this request's decision (its count stays): the next decision counts
    again. For a request first counted under a tier its agent turned out not to be
    on (a stale key hint)."""
    notes = RequestNotes.of(request)
    notes.rate_limit_decided, notes.rate_limit = False, None


class ScopedRateThrottle(BaseThrottle):
    """DRF's default throttle, the one class for every limit.

    A request authenticated as an agent counts in its tier's scope (agent_free,
    agent_pro); any other in the client address's bucket of the view's
    ``throttle_scope``. A view opts out with ``throttle_classes = []`` (Stripe's
    webhook does).
    """

    def __init__(self) -> None:
        self.state: RateLimitState | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = request.user
        tier = getattr(user, "tier", None)  # an agent, authenticated by its key
        if tier is not None:
            self.state = decide_agent(request, agent_id=user.pk, tier=tier)
        else:
            scope = getattr(view, "throttle_scope", None)
            if scope is None:
                raise ImproperlyConfigured(
                    f"{type(view).__name__} takes requests without a key: it needs a "
                    "throttle_scope (or throttle_classes = [])."
                )
            self.state = decide_client(request, scope=scope)
        return self.state is None or not self.state.limited

    def wait(self) -> float | None:
        return self.state.reset if self.state is not None else None
