"""Per-minute rate limits: per agent (rate by tier) and per client IP (unauthenticated).

Counters are django-ratelimit's, in the Django cache (Redis in production, so
every worker and host shares them). The limit is decided after DRF has
authenticated the request (a decorator on dispatch would see no agent yet), and
before a call is metered: a refused call (429) is never counted against the cap.

Every decision is kept on the Django request so it is made once per request and
RateLimitHeadersMiddleware can put the RateLimit-* headers on whatever answer
follows, errors included.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django_ratelimit import core as ratelimit_core
from rest_framework.throttling import BaseThrottle

from accounts.models import Agent
from billing.metering.tiers import tier_limits
from lithtrix.errors import InternalError, RateLimitExceededError
from lithtrix.http import client_ip

AGENT_GROUP = "lithtrix.agent"
IP_GROUP = "lithtrix.ip"
_STATE_ATTR = "lithtrix_rate_limit"
# Set by meter_request for a Free agent's metered call: lifetime calls left after it.
CALLS_REMAINING_ATTR = "lithtrix_calls_remaining"
# One IPv6 client usually holds a whole /64; counting per address would let it
# register without limit. IPv4 addresses count one by one.
IPV6_PREFIX = 64

logger = logging.getLogger(__name__)


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


def _hit(request: HttpRequest, *, group: str, value: str, rate: str) -> RateLimitState | None:
    """Count one request in ``value``'s bucket of ``group``; None when limits are disabled."""
    for _attempt in range(2):
        usage = get_usage(
            request, group=group, key=lambda _group, _request: value, rate=rate, increment=True
        )
        if usage is None:  # RATELIMIT_ENABLE = False
            return None
        # A counted request makes the count at least 1; 0 is django-ratelimit's sign
        # that the cache failed (e.g. the key expired between its add and incr, when
        # nothing was counted: trying again is safe).
        if usage["count"]:
            break
    else:
        logger.error("Rate-limit counter unavailable for group %s", group)
        raise InternalError()
    # django-ratelimit's windows are whole seconds: the current one covers every
    # second up to ``time_left`` from now and ends when the next second starts, so
    # the time left rounded up is time_left + 1. (A request that straddled the end
    # of its window sees a negative time_left: the next window starts within 1 s.)
    return RateLimitState(
        limit=usage["limit"],
        remaining=max(0, usage["limit"] - usage["count"]),
        reset=max(1, usage["time_left"] + 1),
        limited=usage["should_limit"],
    )


def get_usage(request: HttpRequest, *, group: str, key: Callable, rate: str, increment: bool):
    """django-ratelimit's get_usage; counted by metering.cache.RedisCache in one round trip.

    Same bucket key and window as django-ratelimit, so both count alike; the
    add-then-incr pair (two round trips) becomes one atomic script.
    """
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    if not (increment and hasattr(cache, "count_hit")) or not getattr(
        settings, "RATELIMIT_ENABLE", True
    ):
        return ratelimit_core.get_usage(
            request, group=group, key=key, rate=rate, increment=increment
        )
    value = key(group, request)
    limit, period = ratelimit_core._split_rate(rate)
    window = ratelimit_core._get_window(value, period)
    cache_key = ratelimit_core._make_cache_key(group, window, rate, value, ratelimit_core.ALL)
    count = cache.count_hit(cache_key, period + ratelimit_core.EXPIRATION_FUDGE)
    return {
        "count": count,
        "limit": limit,
        "should_limit": count > limit,
        "time_left": window - int(ratelimit_core.time.time()),
    }


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


def rate_limit(request: HttpRequest, *, agent: Agent | None) -> RateLimitState | None:
    """Count this request against its agent's (or, without one, its IP's) limit.

    Idempotent per request: the first call counts, later ones return that result.
    Raises RateLimitExceededError (429, with Retry-After) when the limit is hit.
    """
    django_request = _django_request(request)
    if not hasattr(django_request, _STATE_ATTR):
        if agent is not None:
            state = _hit(
                django_request,
                group=AGENT_GROUP,
                value=str(agent.pk),
                rate=tier_limits(agent.tier).rate,
            )
        else:
            state = _hit(
                django_request,
                group=IP_GROUP,
                value=ip_bucket(client_ip(django_request)),
                rate=settings.LITHTRIX_REGISTER_RATE,
            )
        setattr(django_request, _STATE_ATTR, state)
    state = getattr(django_request, _STATE_ATTR)
    if state is not None and state.limited:
        raise RateLimitExceededError(headers={"Retry-After": str(state.reset)})
    return state


class RateLimitThrottle(BaseThrottle):
    """DRF's default throttle: per agent when authenticated, else per client IP.

    A view opts out with ``throttle_classes = []`` (Stripe's webhook does).
    """

    def allow_request(self, request, view) -> bool:
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
