"""Dependency outages answer like a service: Redis down or stalled -> the rate limit
fails open (or closed: 503), fast, logged once; the database down -> 503 with
Retry-After, logged once; both heal by themselves."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from django.db import OperationalError

from accounts.models import Agent
from lithtrix.core import probes
from lithtrix.tests.faults import use_redis
from testing.assertions import assert_envelope


def outage_lines(caplog, dependency: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "lithtrix.outages" and r.getMessage().startswith(f"{dependency} unavailable")
    ]


def readyz_envelope(response) -> dict:
    """/readyz's 503: the envelope plus ``checks``."""
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["status"], body["error_code"]) == ("error", "SERVICE_UNAVAILABLE")
    return body


def assert_no_tracebacks(caplog) -> None:
    assert [r for r in caplog.records if r.exc_info] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- Redis ---------------------------------------------------------------------


@pytest.mark.django_db
def test_unreachable_redis_fails_open_fast_and_is_logged_once(
    api_client, registered, settings, caplog, closed_port
):
    use_redis(settings, f"redis://127.0.0.1:{closed_port}/0")
    caplog.set_level(logging.INFO)

    started = time.monotonic()
    responses = [api_client.get("/v1/me", **registered.auth) for _ in range(20)]
    elapsed = time.monotonic() - started

    assert [r.status_code for r in responses] == [200] * 20
    assert all("RateLimit-Limit" not in r for r in responses)
    assert elapsed < 5, elapsed
    lines = outage_lines(caplog, "cache")
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert "fail open" in lines[0].getMessage()
    assert_no_tracebacks(caplog)


@pytest.mark.django_db
def test_unreachable_redis_with_fail_closed_is_503(api_client, registered, settings, closed_port):
    use_redis(settings, f"redis://127.0.0.1:{closed_port}/0")
    settings.LITHTRIX_RATE_LIMIT_ON_FAILURE = "closed"

    for _ in range(3):
        response = api_client.get("/v1/me", **registered.auth)
        assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
        assert int(response["Retry-After"]) >= 1
        assert response["Cache-Control"] == "no-store"
    # The key itself was fine: an unauthenticated error would have been 401.
    assert_envelope(api_client.get("/v1/me"), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_stalled_redis_costs_one_timeout_then_nothing_while_the_breaker_is_open(
    api_client, registered, settings, throwaway_redis, caplog
):
    use_redis(settings, throwaway_redis.url)
    settings.LITHTRIX_RATE_LIMIT_BREAKER_SECONDS = 30
    assert "RateLimit-Limit" in api_client.get("/v1/me", **registered.auth)
    throwaway_redis.pause()  # SIGSTOP: connections stay open, nothing answers

    started = time.monotonic()
    first = api_client.get("/v1/me", **registered.auth)
    first_seconds = time.monotonic() - started
    started = time.monotonic()
    rest = [api_client.get("/v1/me", **registered.auth) for _ in range(10)]
    rest_seconds = time.monotonic() - started

    assert first.status_code == 200 and "RateLimit-Limit" not in first
    assert 0.2 <= first_seconds < 1.0, first_seconds  # one read timeout (0.25 s)
    assert [r.status_code for r in rest] == [200] * 10
    assert rest_seconds < 0.2 * 10, rest_seconds  # no Redis call at all
    assert len(outage_lines(caplog, "cache")) == 1


@pytest.mark.django_db
def test_rate_limits_come_back_when_redis_does(
    api_client, registered, settings, throwaway_redis, caplog
):
    use_redis(settings, throwaway_redis.url)
    settings.LITHTRIX_RATE_LIMIT_BREAKER_SECONDS = 0.3
    caplog.set_level(logging.INFO)
    throwaway_redis.pause()
    assert "RateLimit-Limit" not in api_client.get("/v1/me", **registered.auth)

    throwaway_redis.resume()
    time.sleep(0.4)
    response = api_client.get("/v1/me", **registered.auth)

    assert response.status_code == 200
    assert response["RateLimit-Limit"] == "60"
    recovered = [r for r in caplog.records if "available again" in r.getMessage()]
    assert len(recovered) == 1


@pytest.mark.django_db
def test_lifetime_cap_stays_exact_while_redis_is_down(
    api_client, registered, settings, closed_port
):
    use_redis(settings, f"redis://127.0.0.1:{closed_port}/0")
    settings.LITHTRIX_FREE_CALL_LIMIT = 3
    statuses = [api_client.get("/v1/authorize", **registered.auth).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 402, 402]
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 3


@pytest.mark.django_db
def test_readyz_names_the_cache_when_redis_is_down(client, settings, closed_port):
    use_redis(settings, f"redis://127.0.0.1:{closed_port}/0")
    response = client.get("/readyz")
    body = readyz_envelope(response)
    assert body["checks"] == {"database": "ok", "cache": "unavailable"}


# --- the database (in-process; see test_outages_gunicorn.py for a real outage) ----


@pytest.fixture
def database_down(monkeypatch):
    def refuse(**kwargs):
        raise OperationalError('connection to server at "127.0.0.1" failed: Connection refused')

    monkeypatch.setattr("keys.selectors.working_api_key_with_agent_by_hash", refuse)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/me", "/v1/authorize", "/v1/usage"])
def test_database_outage_is_503_with_retry_after_and_one_log_line(
    api_client, registered, database_down, caplog, path
):
    caplog.set_level(logging.INFO)
    for _ in range(10):
        response = api_client.get(path, **registered.auth)
        body = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
        assert body["message"] == "The database is unavailable; retry later."
        assert response["Retry-After"] == "5"
        assert response["Cache-Control"] == "no-store"
    lines = outage_lines(caplog, "database")
    assert len(lines) == 1
    assert "OperationalError" in lines[0].getMessage()
    assert "127.0.0.1" not in lines[0].getMessage()  # the error's text may name hosts
    assert_no_tracebacks(caplog)


@pytest.mark.django_db
def test_outage_lines_repeat_once_per_interval_with_the_count(
    api_client, registered, database_down, caplog, settings
):
    settings.LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS = 0.2
    for _ in range(3):
        api_client.get("/v1/me", **registered.auth)
    time.sleep(0.25)
    api_client.get("/v1/me", **registered.auth)
    lines = outage_lines(caplog, "database")
    assert len(lines) == 2
    assert "2 more failures since the last line" in lines[1].getMessage()


@pytest.mark.django_db
def test_readyz_names_the_database(client, monkeypatch):
    def refuse():
        raise OperationalError("connection refused")

    monkeypatch.setitem(probes.READINESS_CHECKS, "database", refuse)
    body = readyz_envelope(client.get("/readyz"))
    assert body["checks"] == {"database": "unavailable", "cache": "ok"}


@pytest.mark.django_db
def test_counting_goes_on_exactly_when_redis_forgets_its_scripts(
    api_client, registered, settings, throwaway_redis
):
    # Each thread counts with EVALSHA on a connection of its own; a Redis that has
    # lost its script cache (restarted, SCRIPT FLUSH) answers NOSCRIPT, and the
    # count is made once, with EVAL, not lost and not doubled.
    use_redis(settings, throwaway_redis.url)
    remaining = [api_client.get("/v1/me", **registered.auth)["RateLimit-Remaining"]]
    redis.Redis.from_url(throwaway_redis.url).script_flush()
    remaining += [
        api_client.get("/v1/me", **registered.auth)["RateLimit-Remaining"] for _ in range(2)
    ]

    assert remaining == ["59", "58", "57"]


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_database_back_is_logged_by_the_next_connection_whatever_the_request(caplog):
    from django.db import connection

    from lithtrix.core import outages

    outages.report_failure("database", OperationalError("gone"), action="503")
    connection.close()
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="lithtrix.outages"):
        # Any request's first query opens a connection: /readyz need not be the one.
        assert Agent.objects.count() == 0

    back = [r.getMessage() for r in caplog.records if r.name == "lithtrix.outages"]
    assert back == ["database available again after 1 failed requests"]


def _failed_poll(logger: logging.Logger, error: BaseException) -> None:
    """What django-q2's pusher does when its broker's query fails."""
    try:
        raise error
    except Exception:
        logger.exception("Failed to pull task from broker")


def test_the_job_worker_logs_a_database_outage_once_not_a_traceback_per_poll(caplog):
    job_worker = logging.getLogger("django-q")
    with caplog.at_level(logging.INFO):
        for _ in range(5):  # a poll every 10 s: 50 s of outage, within the interval
            _failed_poll(job_worker, OperationalError("connection refused"))

    (line,) = outage_lines(caplog, "database")
    assert line.getMessage() == (
        "database unavailable (OperationalError): django-q: Failed to pull task from broker"
    )
    assert_no_tracebacks(caplog)


def test_the_job_worker_keeps_every_other_error_with_its_traceback(caplog):
    job_worker = logging.getLogger("django-q")
    with caplog.at_level(logging.INFO):
        _failed_poll(job_worker, ValueError("a task that does not unpickle"))
        # A connection failure wrapped by the library is still the database's.
        try:
            try:
                raise OperationalError("server closed the connection unexpectedly")
            except OperationalError as db_error:
                raise RuntimeError("broker failed") from db_error
        except RuntimeError:
            job_worker.exception("Failed to pull task from broker")

    (kept,) = [r for r in caplog.records if r.exc_info]
    assert kept.exc_info[0] is ValueError
    assert len(outage_lines(caplog, "database")) == 1


def test_an_error_raised_while_handling_an_outage_keeps_its_traceback(caplog):
    job_worker = logging.getLogger("django-q")
    with caplog.at_level(logging.INFO):
        try:
            try:
                raise OperationalError("server closed the connection unexpectedly")
            except OperationalError:
                raise KeyError("a bug in the handler") from None
        except KeyError:
            job_worker.exception("Failed to pull task from broker")

    (kept,) = [r for r in caplog.records if r.exc_info]
    assert kept.exc_info[0] is KeyError
    assert outage_lines(caplog, "database") == []
