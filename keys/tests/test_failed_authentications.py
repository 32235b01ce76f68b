"""A flood of well-formed junk keys from one address stops costing database queries,
and never locks out a key that has authenticated recently."""

from __future__ import annotations

import pytest

from keys.crypto import generate_key
from testing.assertions import assert_envelope

ATTACKER = {"REMOTE_ADDR": "198.51.100.66"}


@pytest.fixture
def clock(ratelimit_clock):
    return ratelimit_clock


def junk() -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {generate_key().key}", **ATTACKER}


@pytest.fixture
def flooded(api_client, settings, clock, throttle_rates):
    """The attacker's address has used up its 3 failures a minute."""
    throttle_rates(auth_failures="3/m")
    statuses = [api_client.get("/v1/me", **junk()).status_code for _ in range(4)]
    assert statuses == [401] * 4  # the 4th is counted over the limit and blocks
    return api_client


@pytest.mark.django_db
def test_past_the_limit_junk_keys_get_429_without_a_query(
    flooded, django_assert_num_queries, clock
):
    with django_assert_num_queries(0):
        response = flooded.get("/v1/me", **junk())
    body = assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert "failed authentications" in body["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("3", "0")
    assert response["RateLimit-Reset"] == response["Retry-After"]


@pytest.mark.django_db
def test_a_key_seen_valid_recently_still_authenticates_from_the_blocked_address(
    api_client,
    registered,
    settings,
    clock,
    throttle_rates,
):
    assert api_client.get("/v1/me", **registered.auth).status_code == 200  # seen valid
    throttle_rates(auth_failures="3/m")
    for _ in range(4):
        api_client.get("/v1/me", **junk())
    assert api_client.get("/v1/me", **junk()).status_code == 429

    response = api_client.get("/v1/me", **registered.auth, **ATTACKER)

    assert response.status_code == 200


@pytest.mark.django_db
def test_the_marker_is_shared_so_another_process_also_lets_the_key_through(
    api_client,
    registered,
    settings,
    clock,
    throttle_rates,
):
    from keys import authentication

    assert api_client.get("/v1/me", **registered.auth).status_code == 200
    authentication._seen_valid_until.clear()  # as a process that never saw the key
    throttle_rates(auth_failures="1/m")
    for _ in range(2):
        api_client.get("/v1/me", **junk())

    assert api_client.get("/v1/me", **registered.auth, **ATTACKER).status_code == 200


@pytest.mark.django_db
def test_a_never_seen_valid_key_waits_at_most_the_window(flooded, make_agent, clock):
    fresh = make_agent()
    refused = flooded.get("/v1/me", **fresh.auth, **ATTACKER)
    assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")

    clock.now += int(refused["Retry-After"])

    assert flooded.get("/v1/me", **fresh.auth, **ATTACKER).status_code == 200


@pytest.mark.django_db
def test_other_addresses_are_unaffected(flooded, registered):
    response = flooded.get("/v1/me", **junk() | {"REMOTE_ADDR": "192.0.2.1"})
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert flooded.get("/v1/me", **registered.auth).status_code == 200


@pytest.mark.django_db
def test_authorize_counts_failures_too(api_client, settings, clock, throttle_rates):
    throttle_rates(auth_failures="2/m")
    statuses = [api_client.get("/v1/authorize", **junk()).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


@pytest.mark.django_db
def test_malformed_keys_cost_nothing_and_are_not_counted(
    api_client, settings, clock, throttle_rates
):
    throttle_rates(auth_failures="1/m")
    for _ in range(5):
        response = api_client.get("/v1/me", HTTP_AUTHORIZATION="Bearer ltx_short", **ATTACKER)
        assert_envelope(response, 401, "INVALID_API_KEY")
