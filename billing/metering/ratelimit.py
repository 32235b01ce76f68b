"""Rate limits: per agent (rate by tier) and per client IP (requests without a key).

A fixed window per bucket, counted in the Django cache (Redis in production, so
every worker and host shares the counters) with one round trip per counted
request. Windows are staggered per bucket (an offset derived from the bucket's
name), so every agent's minute does not end at the same second.

The limit is decided after DRF has authenticated the request (a decorator on
dispatch would see no agent yet), and before a call is metered: a refused call
(429) is never counted against the cap.

When the cache cannot be reached or stalls, the limit fails open (the request
goes on, without RateLimit-* headers) or, with LITHTRIX_RATE_LIMIT_ON_FAILURE=
closed, answers 503. After a failure the cache is not tried again for
LITHTRIX_RATE_LIMIT_BREAKER_SECONDS, so a dead Redis does not cost every request
its socket timeout. The lifetime cap lives in the database and is exact either way.

Every decision is kept on the Django request so it is made once per request and
RateLimitHeadersMiddleware can put the RateLimit-* headers on whatever answer
follows, errors included.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import Agent
from billing.metering.tiers import tier_limits
from lithtrix import metrics, outages
from lithtrix.errors import RateLimitExceededError, ServiceUnavailableError
from lithtrix.http import client_ip

if TYPE_CHECKING:  # rest_framework.views loads the throttle classes: this module
    from rest_framework.request import Request
    from rest_framework.views import APIView

AGENT_GROUP = "agent"
IP_GROUP = "ip"
_STATE_ATTR = "lithtrix_rate_limit"
# Set by meter_request for a Free agent's metered call: lifetime calls left after it.
CALLS_REMAINING_ATTR = "lithtrix_calls_remaining"
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


def parse_rate(rate: str) -> tuple[int, int]:
    """A rate setting -> (requests, period in seconds): "60/m" -> (60, 60), "100/5m" ->
    (100, 300), "1000/d" -> (1000, 86400). The one parser every rate goes through."""
    match = _RATE.match(rate.strip())
    if not match:
        raise ValueError(f"not a rate: {rate!r} (expected e.g. 60/m, 100/5m, 1000/d)")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * _PERIOD_SECONDS[unit]


def clock() -> float:
    return time.time()  # tests replace this with a controllable clock


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset: int  # whole seconds until the window resets, >= 1
    limited: bool

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


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


def _count(key: str, timeout: int) -> int:
    """Add one to the counter ``key`` (created with ``timeout`` seconds to live)."""
    cache = caches["default"]
    if hasattr(cache, "count_hit"):  # billing.metering.cache.RedisCache: one round trip
        return cache.count_hit(key, timeout)
    # A process-local cache (single process only): add, then increment under its lock.
    for _attempt in range(2):
        cache.add(key, 0, timeout)
        try:
            return cache.incr(key)
        except ValueError:  # expired between the two calls; nothing was counted
            continue
    raise RuntimeError("counter expired twice in a row")


def _hit(group: str, bucket: str, rate: str) -> RateLimitState | None:
    """Count one request in ``bucket`` of ``group``; None when the count is unknown
    and the limit fails open. Raises ServiceUnavailableError when it fails closed."""
    parse_rate(rate)  # a malformed rate is a configuration error, never a cache outage
    try:
        return count_in_bucket(group, bucket, rate)
    except Exception as exc:  # the cache backend's errors have no common base class
        fail_open = settings.LITHTRIX_RATE_LIMIT_ON_FAILURE != "closed"
        metrics.RATE_LIMIT_STORE_FAILURES.labels(action="open" if fail_open else "closed").inc()
        if fail_open:
            return None
        retry_after = max(1, round(settings.LITHTRIX_RATE_LIMIT_BREAKER_SECONDS))
        raise ServiceUnavailableError(
            "The rate-limit store is unavailable; retry later.",
            headers={"Retry-After": str(retry_after)},
        ) from exc


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
    except Exception as exc:
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


# --- buckets -----------------------------------------------------------------


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


def _django_request(request: HttpRequest) -> HttpRequest:
    return getattr(request, "_request", request)  # a DRF Request wraps Django's


def rate_limit(
    request: HttpRequest,
    *,
    agent: Agent | None,
    group: str | None = None,
    rate: str | None = None,
) -> RateLimitState | None:
    """Count this request against its agent's (or, without one, its IP's) limit.

    ``group`` and ``rate`` give a keyless endpoint its own per-IP bucket (the
    OpenAPI document). Idempotent per request: the first call counts, later ones
    return that result. Raises RateLimitExceededError (429, with Retry-After) when
    the limit is hit, ServiceUnavailableError (503) when the count cannot be made
    and LITHTRIX_RATE_LIMIT_ON_FAILURE is closed.
    """
    django_request = _django_request(request)
    if not hasattr(django_request, _STATE_ATTR):
        if agent is not None:
            group, bucket = AGENT_GROUP, str(agent.pk)
            rate = tier_limits(agent.tier).rate
        else:
            group, bucket = group or IP_GROUP, ip_bucket(client_ip(django_request))
            rate = rate or settings.LITHTRIX_REGISTER_RATE
        state = _hit(group, bucket, rate)
        setattr(django_request, _STATE_ATTR, state)
        if state is not None and state.limited:
            metrics.RATE_LIMIT_REFUSALS.labels(bucket=group).inc()
    state = getattr(django_request, _STATE_ATTR)
    if state is not None and state.limited:
        raise RateLimitExceededError(headers={"Retry-After": str(state.reset)})
    return state


def forget_decision(request: HttpRequest) -> None:
    """Drop this request's remembered decision (its count stays): the next
    rate_limit() call counts again. For a request first counted under a tier its
    agent turned out not to be on (keys.hints, a stale hint)."""
    _django_request(request).__dict__.pop(_STATE_ATTR, None)


class RateLimitThrottle(BaseThrottle):
    """DRF's default throttle: per agent when authenticated, else per client IP.

    A view opts out with ``throttle_classes = []`` (Stripe's webhook does).
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = request.user
        rate_limit(request, agent=user if isinstance(user, Agent) else None)
        return True


class RateLimitHeadersMiddleware:
    """Adds RateLimit-* to every answer of a request whose rate limit was decided,
    and X-Calls-Remaining to a Free agent's metered 200."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        state = getattr(request, _STATE_ATTR, None)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        remaining = getattr(request, CALLS_REMAINING_ATTR, None)
        if remaining is not None and response.status_code == 200:
            response["X-Calls-Remaining"] = str(remaining)
        return response
