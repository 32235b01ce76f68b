"""The per-IP limits (django-ratelimit underneath): each scope its own bucket, the
429 envelope and headers, IPv6 clients per /64, and fail-open with Redis stopped."""

from __future__ import annotations

import itertools
import json

import pytest
from django.urls import get_resolver

from keys.crypto import generate_key
from lithtrix.tests.faults import use_redis
from testing.assertions import assert_envelope

_names = itertools.count()


def register(client, **extra):
    body = {"agent_name": f"agent-{next(_names)}", "owner_identifier": "ip@example.com"}
    return client.post("/v1/register", body, format="json", **extra)


def openapi(client, **extra):
    return client.get("/v1/openapi.json", **extra)


def billing_config(client, **extra):
    return client.get("/v1/billing/config", **extra)


def leaked(client, **extra):
    return client.post(
        "/v1/keys/leaked", data=json.dumps([]), content_type="application/json", **extra
    )


def junk_key(client, **extra):
    return client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {generate_key().key}", **extra)


# scope, one request in it, how many requests a rate of 2/m lets through: a
# failed authentication is refused (401) itself, and the third failure blocks the
# address for the ones that follow.
SCOPES = [
    pytest.param("register", register, 2, id="register"),
    pytest.param("openapi", openapi, 2, id="openapi"),
    pytest.param("billing_config", billing_config, 2, id="billing_config"),
    pytest.param("secret_scanning", leaked, 2, id="secret_scanning"),
    pytest.param("auth_failures", junk_key, 3, id="auth_failures"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("scope", "call", "let_through"), SCOPES)
def test_each_per_ip_limit_answers_429_with_its_headers(
    api_client, ratelimit_clock, throttle_rates, scope, call, let_through
):
    throttle_rates(**{scope: "2/m"})
    before = [call(api_client) for _ in range(let_through)]

    refused = call(api_client)

    assert 429 not in [response.status_code for response in before]
    assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Limit"] == "2"
    assert refused["RateLimit-Remaining"] == "0"
    assert refused["RateLimit-Reset"] == refused["Retry-After"]
    # Another address has a bucket of its own.
    assert call(api_client, REMOTE_ADDR="192.0.2.99").status_code != 429


@pytest.mark.django_db
@pytest.mark.parametrize(("scope", "call", "let_through"), SCOPES)
def test_ipv6_clients_count_per_64_prefix_in_every_scope(
    api_client, ratelimit_clock, throttle_rates, scope, call, let_through
):
    throttle_rates(**{scope: "2/m"})
    for _ in range(let_through):
        call(api_client, REMOTE_ADDR="2001:db8:1:2::1")

    same_64 = call(api_client, REMOTE_ADDR="2001:db8:1:2:ffff::9")
    other_64 = call(api_client, REMOTE_ADDR="2001:db8:1:3::1")

    assert_envelope(same_64, 429, "RATE_LIMIT_EXCEEDED")
    assert other_64.status_code != 429


@pytest.mark.django_db
def test_billing_config_does_not_use_up_registrations(api_client, ratelimit_clock, throttle_rates):
    throttle_rates(billing_config="1/m", register="1/m")
    billing_config(api_client)
    assert billing_config(api_client).status_code == 429

    response = register(api_client)

    assert response.status_code == 201
    assert response["RateLimit-Limit"] == "1"


def _keyless_throttled_views():
    """Every view under /v1 that takes requests without a key and is rate-limited."""
    from rest_framework.views import APIView

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns)
            else:
                view_class = getattr(pattern.callback, "cls", None)
                if isinstance(view_class, type) and issubclass(view_class, APIView):
                    yield view_class

    for view_class in set(walk(get_resolver().url_patterns)):
        if view_class.authentication_classes == [] and view_class.throttle_classes:
            yield view_class


def test_every_keyless_view_names_a_scope_with_a_rate(settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    views = list(_keyless_throttled_views())

    assert views  # /v1/register at least
    unscoped = [view.__name__ for view in views if getattr(view, "throttle_scope", None) is None]
    unrated = [view.__name__ for view in views if view.throttle_scope not in rates]
    assert (unscoped, unrated) == ([], [])


# --- Redis stopped ------------------------------------------------------------------


@pytest.mark.django_db
def test_per_ip_limits_fail_open_with_redis_stopped(
    api_client, settings, throwaway_redis, throttle_rates
):
    use_redis(settings, throwaway_redis.url)
    throttle_rates(register="1/m", auth_failures="1/m")
    first = register(api_client)
    assert first.status_code == 201 and first["RateLimit-Limit"] == "1"

    throwaway_redis.stop()
    registrations = [register(api_client) for _ in range(3)]
    failures = [junk_key(api_client) for _ in range(3)]

    assert [response.status_code for response in registrations] == [201] * 3
    assert not any("RateLimit-Limit" in response for response in registrations)
    assert [response.status_code for response in failures] == [401] * 3


@pytest.mark.django_db
def test_per_ip_limits_fail_closed_when_asked(
    api_client, settings, throwaway_redis, throttle_rates
):
    use_redis(settings, throwaway_redis.url)
    settings.LITHTRIX_RATE_LIMIT_ON_FAILURE = "closed"
    throwaway_redis.stop()

    response = register(api_client)

    assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response["Retry-After"]) >= 1
