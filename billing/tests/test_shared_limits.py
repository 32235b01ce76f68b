"""Rate limits hold across server processes, and the cache they need is required."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from testing.servers import EXACT_COUNT_TIMEOUT, database_url, start_runserver

# Servers or Python in subprocesses, or a browser: seconds each, not milliseconds.
pytestmark = pytest.mark.slow

BASE_DIR = Path(settings.BASE_DIR)


@pytest.mark.django_db(transaction=True)
def test_two_server_processes_share_one_agents_limit(redis_url, registered, tmp_path):
    # A daily window: the test cannot straddle its end (a minute's could).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="lithtrix.test_settings",
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=redis_url,
        LITHTRIX_FREE_RATE="30/d",
        **EXACT_COUNT_TIMEOUT,  # 40 calls at once: the count is asserted exactly
    )
    servers = [start_runserver(env=env, log_path=tmp_path / f"server-{n}.log") for n in range(2)]
    try:
        requests_total = 40
        barrier = threading.Barrier(requests_total)

        def one_call(n: int) -> tuple[int, int, str | None]:
            url = servers[n % 2].url
            with requests.Session() as session:
                barrier.wait(timeout=30)
                response = session.get(
                    url + "/v1/me",
                    headers={"Authorization": f"Bearer {registered.api_key}"},
                    timeout=60,
                )
            return n % 2, response.status_code, response.headers.get("Retry-After")

        with ThreadPoolExecutor(max_workers=requests_total) as pool:
            results = list(pool.map(one_call, range(requests_total)))
    finally:
        for server in servers:
            server.stop()

    statuses = Counter(status for _server, status, _retry in results)
    assert statuses == {200: 30, 429: 10}
    # Both processes served, and both refused once the shared count ran out.
    assert {server for server, status, _retry in results if status == 200} == {0, 1}
    assert all(int(retry or 0) >= 1 for _server, status, retry in results if status == 429)


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "REDIS_URL", "LITHTRIX_", "PYTEST"))
    }
    return subprocess.run(
        [sys.executable, "-c", "import lithtrix.settings"],
        cwd=BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_redis():
    result = _import_settings(DJANGO_SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "REDIS_URL is required" in result.stderr


def test_production_starts_with_redis():
    result = _import_settings(DJANGO_SECRET_KEY="x" * 50, REDIS_URL="redis://127.0.0.1:6379/9")
    assert result.returncode == 0, result.stderr


def test_debug_without_redis_passes_the_checks_migrate_runs(tmp_path):
    # In debug, with no REDIS_URL, one process serves: the process-local cache is
    # accepted and `migrate` runs.
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "REDIS_URL", "LITHTRIX_", "PYTEST", "DATABASE_URL"))
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--plan"],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_DEBUG": "on", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
