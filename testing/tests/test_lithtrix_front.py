"""deploy/nginx/lithtrix.conf, run by a real nginx in front of gunicorn (4 sync
workers, deploy/gunicorn.conf.py) on the suite's PostgreSQL and Redis.

Slow clients cost nginx a connection, never a worker; every answer nginx draws
itself is the API's envelope; X-Request-Id goes through both ways.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from lithtrix.tests.test_multiprocess_limits import (
    access_entries,
    all_workers_serving,
    server_env,
)
from testing.load import Calls, Slowloris, timed_call
from testing.nginx import start_front, stop_nginx
from testing.servers import (
    EXACT_COUNT_TIMEOUT,
    free_port,
    running_gunicorn,
    session_from,
    start_gunicorn,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_postgres,
    pytest.mark.django_db(transaction=True),
]

# Measured on the 2-core machine (load average 9, shared with other suites):
# /healthz and /v1/me through nginx under 50 slowloris connections, p50 6 ms,
# p99 120 ms. A starved worker pool shows as seconds (or timeouts), not as
# milliseconds: without nginx, a few dozen slow clients hold every thread (below).
# The bounds are these floors or LOADED_FACTOR x the same calls without slow
# clients, whichever is higher: a loaded machine slows both alike.
P99_BOUND = 0.25
MAX_BOUND = 1.0
LOADED_FACTOR = 4


def envelope(response: requests.Response, status: int, error_code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert body["error_code"] == error_code
    assert body["message"]
    assert response.headers["X-Request-Id"]
    return body


@pytest.fixture
def app(redis_url, tmp_path):
    env = server_env(
        redis_url,
        LITHTRIX_TRUSTED_PROXIES="127.0.0.1",
        # Only nginx's own address scrapes; other loopback addresses are outsiders.
        LITHTRIX_METRICS_ALLOWED_NETWORKS="127.0.0.1/32",
        # A day's window: a minute's could roll over in the middle of a burst.
        LITHTRIX_REGISTER_RATE="10/d",
        LITHTRIX_FREE_RATE="100000/m",
        LITHTRIX_FREE_CALL_LIMIT="100000",
        **EXACT_COUNT_TIMEOUT,  # the register limit is asserted to the call
    )
    with running_gunicorn(workers=4, env=env, log_path=tmp_path / "gunicorn.log") as server:
        yield server


@pytest.fixture
def front(app, tmp_path):
    (tmp_path / "nginx").mkdir()
    process, url = start_front(tmp_path / "nginx", app.url, workers=2)
    try:
        yield url
    finally:
        stop_nginx(process)


def test_slow_clients_hold_gunicorn_itself(redis_url, tmp_path):
    """Why the front exists: slow clients straight at gunicorn hold its workers. (Shown
    with sync workers, where it is deterministic: 8 slow clients, 4 workers. gthread
    workers fall the same way to a few dozen, depending on how they spread.)"""
    env = server_env(redis_url)
    with running_gunicorn(
        workers=4,
        env=env,
        extra_args=("--worker-class", "sync", "--threads", "1"),
        log_path=tmp_path / "g.log",
    ) as app:
        # Every worker up first: a worker still loading the app when the slow clients
        # connect would free up just in time to answer /healthz.
        all_workers_serving(app)
        with Slowloris(app.url, connections=8, interval=0.5).running():
            time.sleep(1.5)  # each slow connection accepted by a worker, or queued
            with pytest.raises(requests.Timeout):
                requests.get(f"{app.url}/healthz", timeout=1.5)


def test_fifty_slow_clients_do_not_slow_the_others(front, registered):
    healthz, me = Calls(), Calls()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {registered.api_key}"}
    for _ in range(8):  # each worker's first request sets it up: not what is measured
        assert session.get(f"{front}/v1/me", headers=auth, timeout=10).status_code == 200

    def call_for(seconds: float, healthz: Calls, me: Calls) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            timed_call(healthz, session, "GET", f"{front}/healthz", timeout=5)
            timed_call(me, session, "GET", f"{front}/v1/me", headers=auth, timeout=5)

    baseline = {"healthz": Calls(), "me": Calls()}
    call_for(2, baseline["healthz"], baseline["me"])
    with Slowloris(front, connections=50, interval=1.0).running() as slow:
        time.sleep(1.5)  # every slow connection has started and sent a byte or two
        call_for(5, healthz, me)
        still_open = slow.still_open()

    # The slow clients were really there all along, each holding a connection.
    assert still_open == 50, f"only {still_open} slow connections left open"
    assert healthz.statuses == {200: len(healthz.latencies)}, healthz.summary()
    assert me.statuses == {200: len(me.latencies)}, me.summary()
    assert len(me.latencies) >= 20
    for name, calls in (("healthz", healthz), ("me", me)):
        before = baseline[name]
        assert set(before.statuses) == {200}, before.summary()
        p99_bound = max(P99_BOUND, LOADED_FACTOR * before.p(99))
        max_bound = max(MAX_BOUND, LOADED_FACTOR * max(before.latencies))
        assert calls.p(99) < p99_bound, (calls.summary(), before.summary())
        assert max(calls.latencies) < max_bound, (calls.summary(), before.summary())
    print(f"\n/healthz {healthz.summary()}\n/v1/me {me.summary()}")


def test_request_id_goes_through_both_ways(front, registered):
    mine = requests.get(
        f"{front}/v1/me",
        headers={"Authorization": f"Bearer {registered.api_key}", "X-Request-Id": "trace-42"},
        timeout=10,
    )
    assert mine.status_code == 200
    assert mine.headers["X-Request-Id"] == "trace-42"

    # None, or one the app would not keep: nginx's $request_id, kept by the app.
    for headers in ({}, {"X-Request-Id": "bad id with spaces"}):
        response = requests.get(f"{front}/healthz", headers=headers, timeout=10)
        assert response.status_code == 200
        assert len(response.headers["X-Request-Id"]) == 32
        int(response.headers["X-Request-Id"], 16)


def test_a_chunked_body_reaches_the_app_whole(front):
    def chunks():
        yield b'{"agent_name": "chunked-agent", '
        yield b'"owner_identifier": "chunks@example.com"}'

    response = requests.post(
        f"{front}/v1/register",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 201, response.text
    assert response.json()["api_key"].startswith("ltx_")


def test_nginx_answers_its_own_errors_with_the_envelope(front):
    too_big = requests.post(
        f"{front}/v1/register",
        data=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json", "X-Request-Id": "big-body"},
        timeout=10,
    )
    envelope(too_big, 413, "PAYLOAD_TOO_LARGE")
    assert too_big.headers["X-Request-Id"] == "big-body"

    envelope(requests.get(f"{front}/v1/me?q={'a' * 9000}", timeout=10), 414, "URI_TOO_LONG")
    envelope(
        requests.get(f"{front}/v1/me", headers={"X-Big": "a" * 9000}, timeout=10),
        431,
        "REQUEST_HEADERS_TOO_LARGE",
    )

    host, port = front.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw = sock.recv(4096)
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Type: application/json" in raw
    assert raw.endswith(
        b'"error_code": "BAD_REQUEST", "message": "The request is not valid HTTP."}'
    )


def test_the_apps_own_errors_pass_through_untouched(front):
    response = requests.get(f"{front}/v1/no-such-thing", timeout=10)
    envelope(response, 404, "NOT_FOUND")
    unauthenticated = requests.get(f"{front}/v1/me", timeout=10)
    envelope(unauthenticated, 401, "INVALID_API_KEY")
    assert unauthenticated.headers["WWW-Authenticate"] == "Bearer"


def test_keyless_endpoints_are_rate_limited_per_address(front):
    session = requests.Session()
    statuses = []
    refused = None
    for _ in range(60):
        response = session.get(f"{front}/v1/capabilities", timeout=10)
        statuses.append(response.status_code)
        if response.status_code == 429:
            refused = response
            break

    # burst=20 at 5 r/s: the 21st-or-so call within a few seconds is refused.
    assert refused is not None, statuses
    assert statuses.count(200) >= 20
    envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["Retry-After"] == "1"
    # Calls with a key are not limited by nginx.
    assert session.get(f"{front}/healthz", timeout=10).status_code == 200


def test_upstream_down_is_a_502_envelope(tmp_path):
    process, url = start_front(tmp_path, f"http://127.0.0.1:{free_port()}")
    try:
        response = requests.post(
            f"{url}/v1/register", json={}, headers={"X-Request-Id": "down-1"}, timeout=10
        )
    finally:
        stop_nginx(process)

    envelope(response, 502, "BAD_GATEWAY")
    assert response.headers["X-Request-Id"] == "down-1"
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_apps_503_takes_no_host_out_of_the_upstream(tmp_path):
    """Two app hosts whose Redis is down: both answer /readyz 503, a dependency's
    state and not a host's. nginx passes the app's answer on and keeps both hosts:
    every other call is still served (had nginx counted the 503s as failed hosts,
    max_fails=1 would leave no live upstream for fail_timeout, and every call would
    get nginx's 502)."""
    env = server_env(f"redis://127.0.0.1:{free_port()}/0")
    hosts = []
    try:
        for name in ("a", "b"):
            hosts.append(start_gunicorn(workers=1, env=env, log_path=tmp_path / f"{name}.log"))
        (tmp_path / "nginx").mkdir()
        process, url = start_front(
            tmp_path / "nginx",
            hosts[0].url,
            replace={"# server ${LITHTRIX_UPSTREAM_2}": f"server {hosts[1].url[7:]}"},
        )
        try:
            session = requests.Session()
            for _ in range(4):
                ready = session.get(f"{url}/readyz", timeout=10)
                envelope(ready, 503, "SERVICE_UNAVAILABLE")
            for _ in range(4):
                assert session.get(f"{url}/healthz", timeout=10).status_code == 200
        finally:
            stop_nginx(process)
    finally:
        for host in hosts:
            host.stop()
    # Each /readyz went to one host only: none was sent on to the other.
    served = [len(access_entries(host, "/readyz")) for host in hosts]
    assert sum(served) == 4, served


def register(session: requests.Session, url: str, n: int, forwarded_for: str) -> int:
    response = session.post(
        f"{url}/v1/register",
        json={"agent_name": f"spoofer-{n}", "owner_identifier": "spoof@example.com"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    return response.status_code


def test_forwarded_for_from_a_peer_that_is_not_a_proxy_is_ignored(app, front):
    """Only nginx (127.0.0.1) is a trusted proxy: a client straight at gunicorn
    cannot name its address, through nginx it is the address nginx saw."""
    outsider = session_from("127.0.0.2")

    spoofed = outsider.get(
        f"{app.url}/metrics", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=10
    )
    envelope(spoofed, 404, "NOT_FOUND")
    # Through nginx: nginx appends the address it saw, which is what counts.
    through = outsider.get(f"{front}/metrics", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=10)
    envelope(through, 404, "NOT_FOUND")
    # nginx's own address may scrape: the 404s above are the spoof refused.
    assert requests.get(f"{app.url}/metrics", timeout=10).status_code == 200

    # 10 registrations a day per address, whatever address each one claims.
    statuses = [register(outsider, app.url, n, f"198.51.100.{n}") for n in range(12)]
    assert statuses == [201] * 10 + [429] * 2
    # The same client through nginx is the same address; another client is not.
    assert register(outsider, front, 12, "198.51.100.99") == 429
    assert register(session_from("127.0.0.3"), front, 13, "127.0.0.2") == 201
