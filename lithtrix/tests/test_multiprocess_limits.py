"""Limits hold across gunicorn worker processes sharing one Redis and one PostgreSQL."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests
from django.conf import settings
from django.db import connection

from accounts.models import Agent
from billing.models import DailyUsage
from testing.servers import (
    EXACT_COUNT_TIMEOUT,
    app_environment,
    burst,
    database_url,
    running_gunicorn,
)

WORKERS = 4
pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_postgres,
    pytest.mark.django_db(transaction=True),
]


def server_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """Production settings on the test database and the suite's Redis."""
    return app_environment(
        {
            "DATABASE_URL": database_url(connection.settings_dict),
            # Sync workers take one connection at a time, so a burst is spread over
            # every process (a gthread worker could serve it alone): these tests are
            # about counts shared across processes.
            "GUNICORN_WORKER_CLASS": "sync",
            "REDIS_URL": redis_url,
            # The test's cache.clear() must reach the servers' counters: same prefix.
            "LITHTRIX_CACHE_PREFIX": str(settings.CACHES["default"].get("KEY_PREFIX", "")),
            **overrides,
        }
    )


def access_entries(server, path: str) -> list[dict]:
    """The app's access-log entries for ``path`` in a server's log."""
    entries = (json.loads(line) for line in server.log().splitlines() if line.startswith("{"))
    return [e for e in entries if e.get("logger") == "lithtrix.access" and e.get("path") == path]


def serving_pids(server, path: str) -> set[int]:
    return {entry["pid"] for entry in access_entries(server, path)}


def all_workers_serving(server, workers: int = WORKERS) -> None:
    """Wait until every worker has answered /healthz: gunicorn answers as soon as one
    worker is up, and a burst of fast calls can be over before the others have loaded
    the app (then one process serves everything and the test proves nothing)."""
    deadline = time.monotonic() + 30
    while len(serving_pids(server, "/healthz")) < workers:
        assert time.monotonic() < deadline, serving_pids(server, "/healthz")
        burst(f"{server.url}/healthz", {}, 16, concurrency=8)


def test_per_minute_limit_is_exact_across_four_workers(redis_url, registered, tmp_path):
    # A daily window: the burst cannot straddle its end (a minute's could).
    env = server_env(redis_url, LITHTRIX_FREE_RATE="60/d", **EXACT_COUNT_TIMEOUT)
    with running_gunicorn(workers=WORKERS, env=env, log_path=tmp_path / "gunicorn.log") as server:
        all_workers_serving(server)
        me = f"{server.url}/v1/me"
        auth = {"Authorization": f"Bearer {registered.api_key}"}
        first = requests.get(me, headers=auth, timeout=30)
        responses = [first, *burst(me, auth, 99)]

        statuses = Counter(response.status_code for response in responses)
        pids = serving_pids(server, "/v1/me")

    assert first.status_code == 200
    assert statuses == {200: 60, 429: 40}
    # Each allowed call saw its own count: the shared counter never lost an increment.
    remaining = sorted(
        int(r.headers["RateLimit-Remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(60))
    for response in responses:
        assert response.headers["RateLimit-Limit"] == "60"
        if response.status_code == 429:
            assert response.json()["error_code"] == "RATE_LIMIT_EXCEEDED"
            assert response.headers["RateLimit-Remaining"] == "0"
            assert int(response.headers["Retry-After"]) >= 1
    assert len(pids) >= 2, f"one process served everything: {pids}"


def test_free_cap_is_exact_across_four_workers(redis_url, registered, tmp_path):
    env = server_env(redis_url, LITHTRIX_FREE_CALL_LIMIT="25", LITHTRIX_FREE_RATE="10000/m")
    with running_gunicorn(workers=WORKERS, env=env, log_path=tmp_path / "gunicorn.log") as server:
        all_workers_serving(server)
        responses = burst(f"{server.url}/v1/authorize", registered.auth_header, 80)
        pids = serving_pids(server, "/v1/authorize")

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 25, 402: 55}
    for response in responses:
        if response.status_code == 402:
            body = response.json()
            assert body["error_code"] == "OVER_LIMIT"
            assert body["status"] == "error"
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.calls_total == 25
    assert DailyUsage.objects.get(agent=agent).calls == 25
    assert len(pids) >= 2, f"one process served everything: {pids}"


def test_workers_recycled_every_few_requests_keep_answering_and_counting(
    redis_url, registered, tmp_path
):
    # deploy/gunicorn.conf.py preloads the app and forks workers from it: a recycled
    # worker must not inherit a database or Redis connection of another process.
    env = server_env(
        redis_url, GUNICORN_MAX_REQUESTS="15", LITHTRIX_FREE_RATE="1000/d", LITHTRIX_KEY_HINTS="0"
    )
    log = tmp_path / "gunicorn.log"
    with running_gunicorn(
        workers=2, env=env, log_path=log, extra_args=("--max-requests-jitter=0",)
    ) as server:
        auth = {"Authorization": f"Bearer {registered.api_key}"}
        responses = burst(f"{server.url}/v1/authorize", auth, 120, concurrency=4)
        pids = serving_pids(server, "/v1/authorize")
        restarts = server.log().count("Autorestarting worker")

    assert Counter(r.status_code for r in responses) == {200: 120}
    assert restarts >= 4 and len(pids) >= 4, (restarts, pids)
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 120
