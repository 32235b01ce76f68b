"""Per-minute rate limits: per agent by tier, per client IP without a key, headers everywhere."""

from __future__ import annotations

import pytest

from accounts.services import agent_set_tier
from billing.tests.helpers import assert_envelope, rate_headers
from lithtrix.core.ratelimit import ip_bucket, parse_rate, window_end

# Every endpoint that takes a key, with the method that reaches its view.
AUTHENTICATED = [
    ("get", "/v1/me"),
    ("get", "/v1/billing"),
    ("get", "/v1/usage"),
    ("get", "/v1/authorize"),
    ("post", "/v1/keys/rotate"),
]


@pytest.mark.django_db
def test_free_agent_request_61_within_the_minute_is_429(api_client, registered, ratelimit_clock):
    counted = [rate_headers(api_client.get("/v1/me", **registered.auth))[1] for _ in range(60)]
    assert counted == list(range(59, -1, -1))

    response = api_client.get("/v1/me", **registered.auth)

    body = assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert body == {
        "status": "error",
        "error_code": "RATE_LIMIT_EXCEEDED",
        "message": "Per-minute rate limit exceeded. See Retry-After header.",
    }
    limit, remaining, reset = rate_headers(response)
    assert (limit, remaining) == (60, 0)
    assert 1 <= reset <= 60
    assert response["Retry-After"] == str(reset)


@pytest.mark.django_db
def test_limit_resets_when_the_window_ends(api_client, registered, ratelimit_clock):
    for _ in range(60):
        api_client.get("/v1/me", **registered.auth)
    refused = api_client.get("/v1/me", **registered.auth)
    assert refused.status_code == 429

    ratelimit_clock.now += int(refused["Retry-After"]) - 1
    assert api_client.get("/v1/me", **registered.auth).status_code == 429
    ratelimit_clock.now += 1
    response = api_client.get("/v1/me", **registered.auth)
    assert response.status_code == 200
    assert rate_headers(response) == (60, 59, 60)


@pytest.mark.django_db
def test_pro_agent_passes_600_within_the_minute(api_client, registered, ratelimit_clock):
    agent_set_tier(agent=registered.agent, tier="pro")
    statuses = [api_client.get("/v1/me", **registered.auth).status_code for _ in range(600)]
    assert statuses == [200] * 600

    response = api_client.get("/v1/me", **registered.auth)

    assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert rate_headers(response)[:2] == (600, 0)


@pytest.mark.django_db
def test_rates_come_from_settings(
    api_client, registered, ratelimit_clock, settings, throttle_rates
):
    throttle_rates(agent_free="2/m")
    assert api_client.get("/v1/me", **registered.auth).status_code == 200
    assert api_client.get("/v1/billing", **registered.auth).status_code == 200
    assert api_client.get("/v1/usage", **registered.auth).status_code == 429


@pytest.mark.django_db
def test_agents_have_their_own_buckets(
    api_client, make_agent, ratelimit_clock, settings, throttle_rates
):
    throttle_rates(agent_free="1/m")
    first, second = make_agent(), make_agent()
    assert api_client.get("/v1/me", **first.auth).status_code == 200
    assert api_client.get("/v1/me", **first.auth).status_code == 429
    assert api_client.get("/v1/me", **second.auth).status_code == 200


@pytest.mark.django_db
def test_all_authenticated_endpoints_share_the_agents_bucket(
    api_client, registered, ratelimit_clock
):
    auth = registered.auth
    for count, (method, path) in enumerate(AUTHENTICATED * 2, start=1):
        response = getattr(api_client, method)(path, **auth)
        assert response.status_code == 200, (path, response.content)
        assert rate_headers(response)[:2] == (60, 60 - count), path
        if path == "/v1/keys/rotate":
            auth = {"HTTP_AUTHORIZATION": f"Bearer {response.json()['api_key']}"}


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
def test_every_authenticated_answer_carries_the_headers(
    api_client,
    registered,
    ratelimit_clock,
    settings,
    method,
    path,
    throttle_rates,
):
    throttle_rates(agent_free="1/m")
    allowed = getattr(api_client, method)(path, **registered.auth)
    if path == "/v1/keys/rotate":
        registered.api_key = allowed.json()["api_key"]
    refused = getattr(api_client, method)(path, **registered.auth)

    assert allowed.status_code == 200
    assert rate_headers(allowed)[:2] == (1, 0)
    assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert rate_headers(refused)[:2] == (1, 0)
    assert int(refused["Retry-After"]) == rate_headers(refused)[2] >= 1


@pytest.mark.django_db
def test_validation_errors_carry_the_headers_too(api_client, registered, ratelimit_clock):
    response = api_client.put("/v1/me", **registered.auth)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert rate_headers(response)[:2] == (60, 59)


@pytest.mark.django_db
def test_bad_key_is_401_and_uses_no_bucket(
    api_client, registered, ratelimit_clock, settings, throttle_rates
):
    throttle_rates(agent_free="1/m")
    response = api_client.get("/v1/me", HTTP_AUTHORIZATION="Bearer ltx_wrong")
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert "RateLimit-Limit" not in response
    assert api_client.get("/v1/me", **registered.auth).status_code == 200


# --- per client IP, without a key ------------------------------------------------


def register(client, n: int, **extra):
    return client.post(
        "/v1/register",
        {"agent_name": f"agent-{n}", "owner_identifier": "ip@example.com"},
        format="json",
        **extra,
    )


@pytest.mark.django_db
def test_registration_is_limited_per_client_ip(
    api_client, ratelimit_clock, settings, throttle_rates
):
    throttle_rates(register="3/m")
    statuses = [register(api_client, n).status_code for n in range(3)]
    assert statuses == [201, 201, 201]

    refused = register(api_client, 3)

    assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert rate_headers(refused)[:2] == (3, 0)
    assert int(refused["Retry-After"]) >= 1
    # Another address has its own bucket.
    assert register(api_client, 4, REMOTE_ADDR="192.0.2.7").status_code == 201


@pytest.mark.django_db
def test_default_registration_rate_is_ten_a_minute(api_client, ratelimit_clock):
    statuses = [register(api_client, n).status_code for n in range(11)]
    assert statuses == [201] * 10 + [429]


@pytest.mark.django_db
def test_forwarded_for_is_not_trusted_by_default(
    api_client, ratelimit_clock, settings, throttle_rates
):
    throttle_rates(register="1/m")
    assert register(api_client, 0, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 201
    assert register(api_client, 1, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 429


@pytest.mark.django_db
def test_a_trusted_proxy_forwards_the_client_address(
    api_client, ratelimit_clock, settings, throttle_rates
):
    throttle_rates(register="1/m")
    settings.LITHTRIX_TRUSTED_PROXIES = ["127.0.0.1"]
    assert register(api_client, 0, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 201
    assert register(api_client, 1, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 201
    assert register(api_client, 2, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 429


@pytest.mark.django_db
def test_forwarded_for_from_a_peer_that_is_not_a_proxy_is_ignored(
    api_client,
    ratelimit_clock,
    settings,
    throttle_rates,
):
    throttle_rates(register="3/m")
    settings.LITHTRIX_TRUSTED_PROXIES = ["127.0.0.1"]
    statuses = [
        register(
            api_client, n, REMOTE_ADDR="203.0.113.50", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}"
        ).status_code
        for n in range(5)
    ]
    assert statuses == [201, 201, 201, 429, 429]


@pytest.mark.django_db
def test_registration_and_agent_buckets_are_separate(
    api_client,
    registered,
    ratelimit_clock,
    settings,
    throttle_rates,
):
    throttle_rates(register="1/m")
    assert register(api_client, 0).status_code == 201
    assert register(api_client, 1).status_code == 429
    assert api_client.get("/v1/me", **registered.auth).status_code == 200


@pytest.mark.django_db
@pytest.mark.urls("billing.tests.urls")
def test_a_view_can_opt_out_of_rate_limits(api_client, ratelimit_clock, settings, throttle_rates):
    # As Stripe's webhook does: throttle_classes = [].
    throttle_rates(register="1/m")
    for _ in range(3):
        response = api_client.post("/v1/test/unlimited", {}, format="json")
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response


@pytest.mark.django_db
def test_ipv6_clients_are_limited_per_64_prefix(api_client, settings, throttle_rates):
    throttle_rates(register="1/m")
    assert register(api_client, 0, REMOTE_ADDR="2001:db8:1:2::1").status_code == 201
    assert register(api_client, 1, REMOTE_ADDR="2001:db8:1:2:ffff::9").status_code == 429
    assert register(api_client, 2, REMOTE_ADDR="2001:db8:1:3::1").status_code == 201


@pytest.mark.parametrize(
    ("ip", "bucket"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        (None, "unknown"),
    ],
)
def test_ip_bucket(ip, bucket):
    assert ip_bucket(ip) == bucket


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("60/m", (60, 60)),
        ("100/5m", (100, 300)),
        ("1000/d", (1000, 86400)),
        ("10/hour", (10, 3600)),
    ],
)
def test_parse_rate(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["", "60", "60/x", "m/60", "-1/m"])
def test_parse_rate_refuses_what_is_not_a_rate(rate):
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(rate)


def test_windows_are_staggered_per_bucket_and_never_in_the_past():
    now = 1_900_000_000
    ends = {window_end(f"agent-{n}", 60, now) for n in range(50)}
    assert all(now <= end < now + 60 for end in ends)
    assert len(ends) > 10  # buckets do not all roll over at the same second


@pytest.mark.django_db
def test_request_that_straddles_the_window_end_is_answered(
    api_client, registered, ratelimit_clock, monkeypatch
):
    # The window ended while the request was being counted: the reset is the next second.
    end = window_end(str(registered.agent.pk), 60, int(ratelimit_clock.now))
    ratelimit_clock.now = float(end)
    response = api_client.get("/v1/me", **registered.auth)
    assert response.status_code == 200
    assert rate_headers(response) == (60, 59, 1)
