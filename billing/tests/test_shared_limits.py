"""Rate limits hold across server processes, and the cache they need is required."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    """The URL of the database this test runs on (the test database, not the dev one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def _server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DJANGO_SETTINGS_MODULE="lithtrix.test_settings", **extra)
    return env


def _start_server(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log = log
    return process, f"http://127.0.0.1:{port}"


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log_path.read_text()}")
        try:
            requests.get(url + "/v1/me", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    pytest.fail(f"server did not start: {log_path.read_text()}")


@pytest.mark.django_db(transaction=True)
def test_two_server_processes_share_one_agents_limit(redis_url, registered, tmp_path):
    # A daily window: the test cannot straddle its end (a minute's could).
    env = _server_env(DATABASE_URL=_database_url(), REDIS_URL=redis_url, LITHTRIX_FREE_RATE="30/d")
    servers = [_start_server(env, tmp_path / f"server-{n}.log") for n in range(2)]
    try:
        for n, (process, url) in enumerate(servers):
            _wait_until_serving(url, process, tmp_path / f"server-{n}.log")
        requests_total = 40
        barrier = threading.Barrier(requests_total)

        def one_call(n: int) -> tuple[int, int, str | None]:
            url = servers[n % 2][1]
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
        for process, _url in servers:
            process.terminate()
            process.wait(timeout=10)
            process.log.close()

    statuses = Counter(status for _server, status, _retry in results)
    assert statuses == {200: 30, 429: 10}
    # Both processes served, and both refused once the shared count ran out.
    assert {server for server, status, _retry in results if status == 200} == {0, 1}
    assert all(int(retry) >= 1 for _server, status, retry in results if status == 429)


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
