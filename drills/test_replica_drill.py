"""Drill: the read replica stops under a running app (gunicorn, deploy/gunicorn.conf.py).

The reads that go to the replica (/v1/usage's history, the console's lists) keep
answering 200 from the primary within a bounded time, metering is untouched, and
once the replica is back those reads return to it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from drills.conftest import ROWS, Redis, drill_environment
from testing.assertions import wait_for
from testing.pg_replica import (
    PostgresMissing,
    ReplicatedPostgres,
    create_schema,
    postgres_bindir,
    replicated_postgres,
)
from testing.servers import BASE_DIR, BlackHole, Server, app_environment, start_gunicorn

# A stopped replica refuses at once; the fallback read is never slower than this.
FALLBACK_BOUND = 3.0
RETRY_SECONDS = 1
# After the replica is back, reads are on it again within this many seconds.
RECOVERY_BOUND = 10.0
OUTAGE_SECONDS = 4.0
STAFF = ("drill-staff", "drill-staff-password-0123")


@pytest.fixture(scope="module")
def replicated() -> Iterator[ReplicatedPostgres]:
    try:
        postgres_bindir()
    except PostgresMissing as missing:
        pytest.fail(str(missing))
    with replicated_postgres() as pg:
        create_schema(pg.primary_url)
        env = app_environment(
            {
                "DATABASE_URL": pg.primary_url,
                "REDIS_URL": "redis://127.0.0.1:1/0",  # not used by createsuperuser
                "DJANGO_SUPERUSER_USERNAME": STAFF[0],
                "DJANGO_SUPERUSER_PASSWORD": STAFF[1],
                "DJANGO_SUPERUSER_EMAIL": "staff@example.com",
            }
        )
        env.pop("DATABASE_REPLICA_URL", None)
        subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--noinput"],
            cwd=BASE_DIR,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        yield pg


@pytest.fixture
def app(replicated, redis: Redis, black_hole: BlackHole, tmp_path) -> Iterator[Server]:
    env = drill_environment(
        database_url=replicated.primary_url,
        redis_url=redis.url,
        stripe_port=black_hole.port,
        DATABASE_REPLICA_URL=replicated.replica_url,
        LITHTRIX_REPLICA_RETRY_SECONDS=str(RETRY_SECONDS),
    )
    server = start_gunicorn(workers=2, env=env, log_path=tmp_path / "gunicorn.log")
    try:
        yield server
    finally:
        server.stop()


def _staff_session(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/admin/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    response = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"username": STAFF[0], "password": STAFF[1], "csrfmiddlewaretoken": token[1]},
        timeout=10,
    )
    assert response.status_code == 200 and 'id="usage-summary"' in response.text
    return session


def _replica_read(pg: ReplicatedPostgres, table: str) -> bool:
    """True if one of the app's connections to the replica last read ``table``."""
    rows = pg.query(
        pg.replica_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'lithtrix'"
        " AND pid <> pg_backend_pid() AND query LIKE %s",
        f'%"{table}"%',
    )
    return rows[0][0] > 0


def test_replica_stopped_reads_fall_back_to_primary_then_return(app, replicated):
    registered = requests.post(
        f"{app.url}/v1/register",
        json={"agent_name": "replica-drill", "owner_identifier": "d@x.io"},
        timeout=10,
    ).json()
    auth = {"Authorization": f"Bearer {registered['api_key']}"}
    agent, staff = requests.Session(), _staff_session(app.url)
    reads = {
        "/v1/usage": lambda: agent.get(f"{app.url}/v1/usage", headers=auth, timeout=10),
        "/admin/accounts/agent/": lambda: staff.get(f"{app.url}/admin/accounts/agent/", timeout=10),
    }
    authorized = 0
    for _ in range(3):
        assert agent.get(f"{app.url}/v1/authorize", headers=auth, timeout=10).status_code == 200
        authorized += 1
    for read in reads.values():
        assert read().status_code == 200
    assert _replica_read(replicated, "billing_dailyusage")
    assert _replica_read(replicated, "accounts_agent")

    replicated.stop_replica()
    statuses: list[int] = []
    slowest = 0.0
    try:
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            for path, read in reads.items():
                started = time.monotonic()
                status = read().status_code
                slowest = max(slowest, time.monotonic() - started)
                statuses.append(status)
                assert status == 200, path
            assert agent.get(f"{app.url}/v1/authorize", headers=auth, timeout=10).status_code == 200
            authorized += 1
        index = staff.get(f"{app.url}/admin/", timeout=10)
        assert index.status_code == 200
        assert "unreachable" in index.text
        usage = reads["/v1/usage"]().json()
        assert usage["calls_total"] == usage["calls_this_month"] == authorized
    finally:
        replicated.start_replica()
    assert slowest < FALLBACK_BOUND, slowest

    back = time.monotonic()
    while not (_replica_read(replicated, "billing_dailyusage")):
        assert time.monotonic() - back < RECOVERY_BOUND, "reads did not return to the replica"
        assert reads["/v1/usage"]().status_code == 200
        time.sleep(0.2)
    recovery = time.monotonic() - back
    # Each worker retries the replica once its own pause (RETRY_SECONDS) is over, so
    # the index, served by any of them, shows the lag again within that much more.
    lag_shown = wait_for(
        lambda: re.search(
            r'id="summary-replica">\d+\.\d s<', staff.get(f"{app.url}/admin/", timeout=10).text
        ),
        timeout=RETRY_SECONDS + RECOVERY_BOUND,  # each poll renders the whole index
        step=0.2,
    )
    assert lag_shown, "no lag on the console"
    console = time.monotonic() - back
    ROWS.append(
        {
            "drill": "replica stopped",
            "broken": f"read replica, {OUTAGE_SECONDS:.0f} s",
            "clients saw": f"{len(statuses)} reads, all 200; slowest {slowest * 1000:.0f} ms",
            "unaffected p50/p99": "",
            "recovery": (
                f"reads on the replica {recovery:.1f} s after it started,"
                f" its lag on the console {console:.1f} s"
            ),
            "calls_total": f"{usage['calls_total']} = {authorized} authorized",
        }
    )
