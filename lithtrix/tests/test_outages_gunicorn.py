"""Through a real gunicorn: chunked bodies read up to the limit, and a PostgreSQL
outage (the connection cut by a proxy, persistent connections included) answered
with 503s, logged once per process, and healed without a restart."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings
from django.db import connection

from accounts.models import Agent
from lithtrix.tests.faults import TcpProxy
from lithtrix.tests.test_multiprocess_limits import all_workers_serving, server_env
from testing.servers import database_url, running_gunicorn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_postgres,
    pytest.mark.django_db(transaction=True),
]


def raw_request(url: str, head: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send exactly these bytes; read the answer (the connection is closed after it)."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    if headers.get("Transfer-Encoding") == "chunked":
        payload = dechunk(payload)
    return int(lines[0].split()[1]), headers, payload


def chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def post_chunked(url: str, path: str, body: bytes) -> tuple[int, dict[str, str], dict]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    status, headers, payload = raw_request(url, head, chunked(body))
    return status, headers, json.loads(payload)


def test_chunked_bodies_are_read_up_to_the_limit(redis_url):
    env = server_env(redis_url, LITHTRIX_MAX_BODY_BYTES="4096")
    with running_gunicorn(workers=1, env=env) as server:
        body = json.dumps({"agent_name": "chunky", "owner_identifier": "c@example.com"}).encode()
        status, headers, created = post_chunked(server.url, "/v1/register", body)
        assert status == 201, created
        assert created["api_key"].startswith("ltx_")
        assert headers["Cache-Control"] == "no-store"

        padding = json.dumps({"agent_name": "x" * 5000, "owner_identifier": "c@example.com"})
        status, _, refused = post_chunked(server.url, "/v1/register", padding.encode())
        assert status == 413
        assert refused["error_code"] == "PAYLOAD_TOO_LARGE"

        status, _, deep = post_chunked(server.url, "/v1/register", b"[" * 2000)
        assert status == 400
        assert deep["error_code"] == "VALIDATION_ERROR"
    assert Agent.objects.filter(agent_name="chunky").count() == 1


def database_url_through(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"


def test_database_outage_is_503_logged_once_per_process_and_heals(redis_url, tmp_path):
    db = connection.settings_dict
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    env = server_env(
        redis_url,
        DATABASE_URL=database_url_through(proxy),
        DJANGO_CONN_MAX_AGE="600",  # persistent connections, which the cut breaks
        LITHTRIX_DB_CONNECT_TIMEOUT_SECONDS="2",
        LITHTRIX_FREE_RATE="10000/m",
    )
    log_path = tmp_path / "gunicorn.log"
    workers = 2
    try:
        with running_gunicorn(workers=workers, env=env, log_path=log_path) as server:
            created = requests.post(
                f"{server.url}/v1/register",
                json={"agent_name": "outage", "owner_identifier": "o@example.com"},
                timeout=30,
            ).json()
            auth = {"Authorization": f"Bearer {created['api_key']}"}
            assert all(
                requests.get(f"{server.url}/v1/me", headers=auth, timeout=30).status_code == 200
                for _ in range(10)
            )

            proxy.cut()
            started = time.monotonic()
            answers = [
                requests.get(f"{server.url}{path}", headers=auth, timeout=30)
                for _ in range(10)
                for path in ("/v1/me", "/v1/authorize")
            ]
            outage_seconds = time.monotonic() - started
            ready = requests.get(f"{server.url}/readyz", timeout=30)
            alive = requests.get(f"{server.url}/healthz", timeout=30)

            proxy.restore()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                healed = requests.get(f"{server.url}/v1/me", headers=auth, timeout=30)
                if healed.status_code == 200:
                    break
                time.sleep(0.2)
            recovery_seconds = time.monotonic() - (deadline - 20)
            after = [
                requests.get(f"{server.url}/v1/me", headers=auth, timeout=30).status_code
                for _ in range(10)
            ]
    finally:
        proxy.cut()

    print(
        f"database cut: {len(answers)} requests answered in {outage_seconds:.2f} s; "
        f"served again {recovery_seconds:.2f} s after it came back"
    )
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error_code"] == "SERVICE_UNAVAILABLE"
        assert answer.headers["Retry-After"] == "5"
    assert outage_seconds < 10, outage_seconds
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable"
    assert alive.status_code == 200
    assert healed.status_code == 200, healed.text
    assert recovery_seconds < 5, recovery_seconds
    assert after == [200] * 10

    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    outages = [
        e
        for e in entries
        if e["logger"] == "lithtrix.outages" and e["message"].startswith("database unavailable")
    ]
    assert 1 <= len(outages) <= workers  # one per process that met the outage
    assert not [e for e in entries if "exc" in e or e["level"] in ("ERROR", "CRITICAL")]
    assert "Traceback" not in server.log()


def test_metrics_add_up_every_workers_counts(redis_url, tmp_path):
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    env = server_env(redis_url, PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir))
    with running_gunicorn(workers=2, env=env, log_path=tmp_path / "gunicorn.log") as server:
        all_workers_serving(server, workers=2)
        # Concurrent, each on its own connection, so both workers serve some.
        url = f"{server.url}/v1/capabilities"
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _n: requests.get(url, timeout=30), range(40)))
        assert [a.status_code for a in answers] == [200] * 40
        text = requests.get(f"{server.url}/metrics", timeout=30).text
        pids = {
            json.loads(line)["pid"]
            for line in server.log().splitlines()
            if line.startswith("{") and '"path": "/v1/capabilities"' in line
        }
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("lithtrix_http_requests_total{")
        and 'endpoint="/v1/capabilities"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == 40
    assert len(pids) == 2  # served by both workers, and counted together


@pytest.mark.skipif(
    settings.DATABASE_POOLING == "pgbouncer",
    reason="PgBouncer refuses the startup option: there the bounds are the role's "
    "(docs/configuration.md); the direct PostgreSQL pass runs this",
)
def test_a_table_locked_too_long_is_503_in_the_lock_bound_not_a_killed_worker(redis_url, tmp_path):
    import psycopg

    env = server_env(redis_url, LITHTRIX_DB_LOCK_TIMEOUT_MS="500")
    with running_gunicorn(workers=1, env=env, log_path=tmp_path / "gunicorn.log") as server:
        created = requests.post(
            f"{server.url}/v1/register",
            json={"agent_name": "locked-out", "owner_identifier": "o@example.com"},
            timeout=30,
        ).json()
        auth = {"Authorization": f"Bearer {created['api_key']}"}
        assert requests.get(f"{server.url}/v1/me", headers=auth, timeout=30).status_code == 200
        # What a migration's ALTER TABLE holds, here for longer than any bound.
        holder = psycopg.connect(database_url(connection.settings_dict))
        try:
            holder.execute(f"LOCK TABLE {Agent._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            answers = [
                requests.get(f"{server.url}{path}", headers=auth, timeout=30)
                for path in ("/v1/me", "/v1/authorize")
            ]
            elapsed = time.monotonic() - started
        finally:
            holder.close()
        after = requests.get(f"{server.url}/v1/me", headers=auth, timeout=30)

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error_code"] == "SERVICE_UNAVAILABLE"
        assert answer.headers["Retry-After"] == "5"
    # Two lock waits of 0.5 s each, far below gunicorn's 30 s worker timeout.
    assert elapsed < 10, elapsed
    assert after.status_code == 200
    # The /v1/authorize refused under the lock counted nothing.
    assert Agent.objects.get(agent_name="locked-out").calls_total == 0
    assert "WORKER TIMEOUT" not in server.log()
