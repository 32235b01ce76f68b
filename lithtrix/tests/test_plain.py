"""GET /v1/me drawn by lithtrix.plain answers exactly as the DRF viewset does.

Each case is sent twice with the same key: once to the project's routes (the
plain GET), once to lithtrix.tests.urls_drf, where the viewset alone draws
/v1/me. Status, headers and body must match; only X-Request-Id differs, and
RateLimit-Remaining by the one call the first request counted.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.views import MeViewSet
from keys.services import api_key_revoke
from lithtrix.plain import accepts_json
from testing.assertions import assert_envelope

ME = "/v1/me"
UNKNOWN_KEY = "ltx_" + "a" * 36


def _both(client: APIClient, method: str, path: str = ME, **extra):
    plain = client.generic(method, path, **extra)
    with override_settings(ROOT_URLCONF="lithtrix.tests.urls_drf"):
        drf = client.generic(method, path, **extra)
    return plain, drf


def _assert_same_answer(plain, drf) -> None:
    assert plain.status_code == drf.status_code
    assert plain.content == drf.content
    plain_headers = {k: v for k, v in plain.headers.items() if k != "X-Request-Id"}
    drf_headers = {k: v for k, v in drf.headers.items() if k != "X-Request-Id"}
    if "RateLimit-Remaining" in drf_headers and plain.status_code != 429:
        remaining = int(plain_headers.pop("RateLimit-Remaining"))
        assert int(drf_headers.pop("RateLimit-Remaining")) == max(0, remaining - 1)
    assert plain_headers == drf_headers


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"HTTP_ACCEPT": "application/json"},
        {"HTTP_ACCEPT": "text/html, application/json;q=0.9, */*;q=0.8"},
        {"HTTP_ACCEPT": "application/*"},
        {"HTTP_ACCEPT": "text/html"},  # DRF: 406, by both routes
        {"HTTP_ACCEPT": "Application/JSON"},  # DRF does not fold case: 406
        {"QUERY_STRING": "format=json"},
        {"QUERY_STRING": "format=xml"},  # DRF: 404 for an unknown format
        {"QUERY_STRING": "unrelated=1"},
    ],
    ids=repr,
)
def test_a_keyed_get_answers_as_drf_does(api_client, make_agent, ratelimit_clock, extra):
    agent = make_agent(owner="jürgen@example.com")  # not ASCII: the renderer keeps it as is
    for method in ("GET", "HEAD"):
        _assert_same_answer(*_both(api_client, method, **agent.auth, **extra))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ltx_short", f"Bearer {UNKNOWN_KEY}"],
    ids=repr,
)
def test_a_refused_key_gets_the_same_envelope_and_challenge(api_client, authorization):
    extra = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    plain, drf = _both(api_client, "GET", **extra)
    assert_envelope(plain, 401, "INVALID_API_KEY")
    assert plain["WWW-Authenticate"] == "Bearer"
    _assert_same_answer(plain, drf)


@pytest.mark.django_db
def test_a_revoked_key_is_refused_by_both(api_client, registered):
    api_key_revoke(api_key=registered.agent.api_keys.get())
    plain, drf = _both(api_client, "GET", **registered.auth)
    assert_envelope(plain, 401, "INVALID_API_KEY")
    _assert_same_answer(plain, drf)


@pytest.mark.django_db
def test_over_the_rate_limit_both_answer_429_with_the_same_headers(
    api_client,
    registered,
    ratelimit_clock,
    settings,
    throttle_rates,
):
    throttle_rates(agent_free="3/m")
    for _ in range(3):
        assert api_client.get(ME, **registered.auth).status_code == 200
    plain, drf = _both(api_client, "GET", **registered.auth)
    assert_envelope(plain, 429, "RATE_LIMIT_EXCEEDED")
    assert plain["Retry-After"] and plain["RateLimit-Remaining"] == "0"
    _assert_same_answer(plain, drf)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "OPTIONS"])
def test_other_methods_are_drfs(api_client, registered, ratelimit_clock, method):
    # The rate limit's clock stands still: RateLimit-Reset must not tick between the two.
    plain, drf = _both(api_client, method, **registered.auth)
    _assert_same_answer(plain, drf)
    assert plain.status_code == (200 if method == "OPTIONS" else 405)


@pytest.mark.django_db
def test_the_plain_get_runs_no_drf_dispatch_and_one_query(
    api_client, registered, monkeypatch, django_assert_num_queries
):
    def no_dispatch(*args, **kwargs):
        raise AssertionError("DRF dispatched the plain GET")

    monkeypatch.setattr(MeViewSet, "initial", no_dispatch)
    with django_assert_num_queries(1):  # the key lookup, agent joined
        response = api_client.get(ME, **registered.auth)
    assert response.status_code == 200
    assert response.json()["agent_id"] == str(registered.agent.id)
    # Anything else still goes through DRF (whose handler turns the error into a 500).
    assert api_client.get(ME, HTTP_ACCEPT="text/html", **registered.auth).status_code == 500


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, True),
        ("*/*", True),
        ("application/json; charset=utf-8", True),
        ("text/plain, application/*;q=0.1", True),
        ("", False),
        ("text/html", False),
        ("application/jsonx", False),
        ("application/problem+json", False),
    ],
)
def test_accepts_json_only_for_what_drf_matches_to_json(accept, expected):
    assert accepts_json(accept) is expected
