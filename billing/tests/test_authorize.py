"""ANY /v1/authorize: forward-auth for gateways, metered like any metered view."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Agent
from accounts.services import agent_set_tier
from billing.models import DailyUsage
from billing.tests.helpers import assert_envelope, rate_headers, set_calls_total
from keys.crypto import generate_key
from keys.services import api_key_revoke, api_key_rotate

AUTHORIZE = "/v1/authorize"
METHODS = ["get", "post", "put", "patch", "delete", "head", "options"]


def calls_total(agent: Agent) -> int:
    return Agent.objects.get(pk=agent.pk).calls_total


@pytest.mark.django_db
@pytest.mark.parametrize("method", METHODS)
def test_authorize_accepts_every_method_and_meters_it(api_client, registered, method):
    response = getattr(api_client, method)(AUTHORIZE, **registered.auth)

    assert response.status_code == 200
    assert response["X-Agent-Id"] == str(registered.agent.pk)
    assert response["X-Agent-Tier"] == "free"
    assert rate_headers(response)[:2] == (60, 59)
    if method != "head":
        assert response.json() == {"agent_id": str(registered.agent.pk), "tier": "free"}
    assert calls_total(registered.agent) == 1
    assert DailyUsage.objects.get(agent=registered.agent).calls == 1


@pytest.mark.django_db
def test_authorize_never_reads_the_body(api_client, registered):
    response = api_client.generic(
        "POST", AUTHORIZE, b"{not json", content_type="text/plain", **registered.auth
    )
    assert response.status_code == 200
    assert calls_total(registered.agent) == 1


@pytest.mark.django_db
def test_authorize_reports_pro_tier(api_client, registered):
    agent_set_tier(agent=registered.agent, tier="pro")
    response = api_client.get(AUTHORIZE, **registered.auth)
    assert response.status_code == 200
    assert response["X-Agent-Tier"] == "pro"
    assert rate_headers(response)[:2] == (600, 599)


def _with_bad_checksum(key: str) -> str:
    return key[:-1] + ("a" if key[-1] != "a" else "b")


def _rotated_key(registered) -> str:
    api_key_rotate(api_key=registered.agent.api_keys.get())
    return registered.api_key


def _revoked_key(registered) -> str:
    api_key_revoke(api_key=registered.agent.api_keys.get())
    return registered.api_key


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda r: None, id="missing"),
        pytest.param(lambda r: "", id="empty"),
        pytest.param(lambda r: f"Basic {r.api_key}", id="not-bearer"),
        pytest.param(lambda r: "Bearer ltx_short", id="malformed"),
        pytest.param(lambda r: f"Bearer {_with_bad_checksum(r.api_key)}", id="bad-checksum"),
        pytest.param(lambda r: f"Bearer {generate_key().key}", id="unknown"),
        pytest.param(lambda r: f"Bearer {_rotated_key(r)}", id="rotated"),
        pytest.param(lambda r: f"Bearer {_revoked_key(r)}", id="revoked"),
    ],
)
def test_authorize_refuses_bad_keys_without_metering(api_client, registered, header):
    value = header(registered)
    extra = {} if value is None else {"HTTP_AUTHORIZATION": value}

    response = api_client.post(AUTHORIZE, **extra)

    body = assert_envelope(response, 401, "INVALID_API_KEY")
    assert set(body) == {"status", "error_code", "message"}
    assert response["WWW-Authenticate"] == "Bearer"
    assert "X-Agent-Id" not in response
    assert calls_total(registered.agent) == 0


@pytest.mark.django_db
def test_malformed_key_costs_no_query(api_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api_client.get(AUTHORIZE, HTTP_AUTHORIZATION="Bearer ltx_nope")
    assert response.status_code == 401


@pytest.mark.django_db
def test_authorize_over_the_cap_is_402_and_not_counted(api_client, registered):
    set_calls_total(registered.agent, 300)

    response = api_client.get(AUTHORIZE, **registered.auth)

    body = assert_envelope(response, 402, "OVER_LIMIT")
    assert body == {
        "status": "error",
        "error_code": "OVER_LIMIT",
        "message": body["message"],
        "upgrade_url": "/v1/billing/setup",
    }
    assert "X-Agent-Id" not in response
    assert rate_headers(response)[:2] == (60, 59)
    assert calls_total(registered.agent) == 300
    # Not counted as a call; counted as refused, for support to see.
    usage = DailyUsage.objects.get(agent=registered.agent)
    assert (usage.calls, usage.refused) == (0, 1)


@pytest.mark.django_db
def test_the_last_free_call_passes_and_the_next_is_refused(api_client, registered):
    set_calls_total(registered.agent, 299)
    assert api_client.get(AUTHORIZE, **registered.auth).status_code == 200
    assert api_client.get(AUTHORIZE, **registered.auth).status_code == 402
    assert calls_total(registered.agent) == 300


@pytest.mark.django_db
def test_upgrading_lifts_the_cap(api_client, registered):
    set_calls_total(registered.agent, 300)
    assert api_client.get(AUTHORIZE, **registered.auth).status_code == 402
    agent_set_tier(agent=registered.agent, tier="pro")
    assert api_client.get(AUTHORIZE, **registered.auth).status_code == 200
    assert calls_total(registered.agent) == 301


@pytest.mark.django_db
def test_rate_limited_authorize_is_429_and_not_counted(api_client, registered, ratelimit_clock):
    for _ in range(60):
        assert api_client.get("/v1/me", **registered.auth).status_code == 200

    response = api_client.get(AUTHORIZE, **registered.auth)

    assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    limit, remaining, reset = rate_headers(response)
    assert (limit, remaining) == (60, 0)
    assert int(response["Retry-After"]) == reset >= 1
    assert calls_total(registered.agent) == 0
    assert not DailyUsage.objects.exists()


@pytest.mark.django_db
def test_rate_limit_is_decided_before_the_cap(api_client, registered, ratelimit_clock):
    # Over both limits: the answer is 429 (retry later), as for any refused request.
    set_calls_total(registered.agent, 300)
    for _ in range(60):
        assert api_client.get(AUTHORIZE, **registered.auth).status_code == 402
    assert_envelope(api_client.get(AUTHORIZE, **registered.auth), 429, "RATE_LIMIT_EXCEEDED")
    assert calls_total(registered.agent) == 300


@pytest.mark.django_db(transaction=True)
def test_concurrent_http_calls_through_the_threaded_server_stop_at_the_cap(
    live_server,
    registered,
    settings,
    throttle_rates,
):
    # Real HTTP requests, each served by its own server thread and database
    # connection (SQLite: a file, BEGIN IMMEDIATE; PostgreSQL: row locks).
    throttle_rates(agent_free="1000/m")  # this test is about the cap
    set_calls_total(registered.agent, 290)
    calls = 64
    barrier = threading.Barrier(calls)

    def one_call(_: int) -> int:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            response = session.post(
                live_server.url + AUTHORIZE,
                headers={"Authorization": f"Bearer {registered.api_key}"},
                timeout=60,
            )
            return response.status_code

    with ThreadPoolExecutor(max_workers=calls) as pool:
        statuses = list(pool.map(one_call, range(calls)))

    assert statuses.count(200) == 10
    assert statuses.count(402) == 54
    assert calls_total(registered.agent) == 300
    assert DailyUsage.objects.get(agent=registered.agent).calls == 10


@pytest.mark.django_db
def test_authorize_takes_one_query_to_authenticate_and_one_to_meter(api_client, registered):
    # The path every proxied call takes stays lean: on PostgreSQL the metering
    # (cap check, counter and daily row) is one statement; SQLite needs two.
    with CaptureQueriesContext(connection) as captured:
        response = api_client.get(AUTHORIZE, **registered.auth)
    assert response.status_code == 200
    statements = [
        q["sql"].split()[0]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))  # the test's transaction
    ]
    if connection.vendor == "postgresql":
        assert statements == ["SELECT", "WITH"]
    else:
        assert statements == ["SELECT", "UPDATE", "INSERT"]


@pytest.mark.django_db
def test_authorize_ignores_a_body_over_the_size_limit(api_client, registered, settings):
    # A gateway may pass the client's Content-Length on; the body is never read.
    settings.LITHTRIX_MAX_BODY_BYTES = 10
    response = api_client.generic(
        "POST", AUTHORIZE, b"x" * 100, content_type="application/octet-stream", **registered.auth
    )
    assert response.status_code == 200
    assert calls_total(registered.agent) == 1


@pytest.mark.django_db
def test_a_free_agents_200_says_how_many_calls_remain(api_client, registered, settings):
    first = api_client.get(AUTHORIZE, **registered.auth)
    assert first["X-Calls-Remaining"] == str(settings.LITHTRIX_FREE_CALL_LIMIT - 1)
    set_calls_total(registered.agent, settings.LITHTRIX_FREE_CALL_LIMIT - 1)

    last = api_client.get(AUTHORIZE, **registered.auth)
    over = api_client.get(AUTHORIZE, **registered.auth)

    assert last.status_code == 200 and last["X-Calls-Remaining"] == "0"
    assert_envelope(over, 402, "OVER_LIMIT")
    assert "X-Calls-Remaining" not in over


@pytest.mark.django_db
def test_a_pro_agents_200_has_no_calls_remaining(api_client, registered):
    agent_set_tier(agent=registered.agent, tier="pro")
    response = api_client.get(AUTHORIZE, **registered.auth)
    assert response.status_code == 200
    assert "X-Calls-Remaining" not in response


@pytest.mark.django_db
def test_authorize_is_answered_before_the_consoles_middleware(api_client, registered, settings):
    response = api_client.get(AUTHORIZE, **registered.auth, HTTP_X_REQUEST_ID="req-auth-1")

    assert response.status_code == 200
    # billing.metering.middleware drew it: no URL was resolved, and the console's
    # middleware (sessions, CSRF, X-Frame-Options) never ran...
    assert response.wsgi_request.resolver_match is None
    assert "X-Frame-Options" not in response
    assert not response.cookies
    # ...while the answer carries what every metered API answer carries.
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Request-Id"] == "req-auth-1"
    assert rate_headers(response)[:2] == (60, 59)
    assert response["X-Calls-Remaining"] == str(settings.LITHTRIX_FREE_CALL_LIMIT - 1)


@pytest.mark.django_db
def test_authorize_error_the_view_lets_out_is_the_envelope(
    api_client, registered, monkeypatch, caplog
):
    def broken(request, *, authorization):
        raise RuntimeError("boom: secret detail")

    monkeypatch.setattr("billing.metering.views.meter_presented_key", broken)
    caplog.set_level(logging.ERROR)
    response = api_client.get(AUTHORIZE, **registered.auth)

    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "secret detail" not in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["Unhandled error in GET /v1/authorize"]
    assert errors[0].exc_info is not None
    assert calls_total(registered.agent) == 0


@pytest.mark.django_db
def test_authorize_database_outage_is_503(api_client, registered, monkeypatch):
    def outage(request, *, authorization):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr("billing.metering.views.meter_presented_key", outage)
    response = api_client.get(AUTHORIZE, **registered.auth)

    assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response["Retry-After"]) > 0
