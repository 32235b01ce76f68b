"""Reads that may lag go to a real streaming replica; nothing else does; a replica
that is down costs a bounded wait, then the primary answers."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import dj_database_url
import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Agent
from accounts.services import agent_register
from lithtrix.core import replica
from testing.pg_replica import (
    PostgresMissing,
    ReplicatedPostgres,
    create_schema,
    postgres_bindir,
    replicated_postgres,
)
from testing.servers import BlackHole

# A refused connection answers at once and a silent one after connect_timeout (2 s):
# the fallback read answers within this, everything on the request included.
FALLBACK_BOUND = 3.0


def _alias_settings(url: str) -> dict[str, Any]:
    database: dict[str, Any] = {
        **dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    }
    database["ENGINE"] = "lithtrix.core.postgresql"
    database["OPTIONS"] = {"connect_timeout": 2, "prepare_threshold": 5}
    return database


@contextlib.contextmanager
def databases(primary_url: str, replica_url: str) -> Iterator[None]:
    """This thread's "default" is the throwaway primary, and "replica" its replica."""
    saved_settings = connections.settings
    saved_default = connections["default"]
    connections.settings = connections.configure_settings(
        {
            **saved_settings,
            "default": _alias_settings(primary_url),
            "replica": _alias_settings(replica_url),
        }
    )
    del connections["default"]
    try:
        yield
    finally:
        for alias in ("default", "replica"):
            connections[alias].close()
            del connections[alias]
        connections.settings = saved_settings
        connections["default"] = saved_default


@pytest.fixture(scope="module")
def pg(django_db_blocker) -> Iterator[ReplicatedPostgres]:
    try:
        postgres_bindir()
    except PostgresMissing as missing:
        pytest.fail(str(missing))  # CI installs PostgreSQL: never a skip
    with replicated_postgres() as started:
        create_schema(started.primary_url)
        yield started


@pytest.fixture
def replicated(pg, django_db_blocker, monkeypatch) -> Iterator[ReplicatedPostgres]:
    monkeypatch.setattr(replica, "RETRY_SECONDS", 0.5)
    with django_db_blocker.unblock(), databases(pg.primary_url, pg.replica_url):
        replica.reset_breaker()
        yield pg
    replica.reset_breaker()


def _staff_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username="replica-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def _tables(queries) -> set[str]:
    return {table for q in queries for table in re.findall(r'FROM "(\w+)"', q["sql"])}


@pytest.mark.requires_postgres
def test_console_list_and_index_read_from_replica_and_show_its_lag(replicated):
    agent = agent_register(agent_name="listed-on-replica", owner_identifier="o@x.io").agent
    client = _staff_client()
    replicated.wait_replayed()

    with (
        CaptureQueriesContext(connections["replica"]) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        page = client.get("/admin/accounts/agent/")
    assert page.status_code == 200
    assert "listed-on-replica" in page.content.decode()
    assert "accounts_agent" in _tables(on_replica.captured_queries)
    assert "accounts_agent" not in _tables(on_primary.captured_queries)

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        index = client.get("/admin/")
    assert index.status_code == 200
    html = index.content.decode()
    assert {"accounts_agent", "billing_dailyusage"} <= _tables(on_replica.captured_queries)
    assert re.search(r'id="summary-replica">\d+\.\d s<', html), html
    assert re.search(r'id="summary-registrations">[1-9]\d*<', html)

    # An object read from the replica is saved to the primary (the replica is read-only).
    from_replica = Agent.objects.using("replica").get(pk=agent.pk)
    from_replica.agent_name = "renamed"
    from_replica.save(update_fields=["agent_name"])
    assert replicated.query(
        replicated.primary_url, "SELECT agent_name FROM accounts_agent WHERE id = %s", agent.pk
    ) == [("renamed",)]


@pytest.mark.requires_postgres
def test_usage_history_reads_replica_while_authentication_and_metering_never_do(replicated):
    registration = agent_register(agent_name="metered", owner_identifier="o@x.io")
    auth = {"Authorization": f"Bearer {registration.api_key}"}
    client = Client()

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        for _ in range(3):
            assert client.get("/v1/authorize", headers=auth).status_code == 200
        assert client.get("/v1/me", headers=auth).status_code == 200
    assert on_replica.captured_queries == []

    replicated.wait_replayed()
    with (
        CaptureQueriesContext(connections["replica"]) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        usage = client.get("/v1/usage", headers=auth)
    assert usage.status_code == 200
    body = usage.json()
    assert body["calls_total"] == 3
    assert body["calls_this_month"] == 3
    assert sum(day["calls"] for day in body["daily_breakdown"]) == 3
    assert _tables(on_replica.captured_queries) == {"billing_dailyusage"}
    assert "billing_dailyusage" not in _tables(on_primary.captured_queries)


@pytest.mark.requires_postgres
def test_replica_stopped_reads_answer_from_primary_in_bounded_time(replicated):
    registration = agent_register(agent_name="during-outage", owner_identifier="o@x.io")
    auth = {"Authorization": f"Bearer {registration.api_key}"}
    client, staff = Client(), _staff_client()
    assert client.get("/v1/authorize", headers=auth).status_code == 200
    # Connections to the replica are open, and the pages' templates loaded.
    assert client.get("/v1/usage", headers=auth).status_code == 200
    assert staff.get("/admin/accounts/agent/").status_code == 200
    assert staff.get("/admin/").status_code == 200

    replicated.stop_replica()
    try:
        for path, user, headers in (
            ("/v1/usage", client, auth),
            ("/admin/accounts/agent/", staff, {}),
            ("/admin/", staff, {}),
        ):
            replica.reset_breaker()  # each read meets the stopped replica itself
            started = time.monotonic()
            with CaptureQueriesContext(connections["default"]) as on_primary:
                response = user.get(path, headers=headers)
            elapsed = time.monotonic() - started
            assert response.status_code == 200, path
            assert elapsed < FALLBACK_BOUND, (path, elapsed)
            assert _tables(on_primary.captured_queries) & {"accounts_agent", "billing_dailyusage"}
        assert client.get("/v1/usage", headers=auth).json()["calls_this_month"] == 1
        assert "unreachable" in staff.get("/admin/").content.decode()
    finally:
        replicated.start_replica()

    # After the breaker's pause, reads go back to the replica.
    time.sleep(replica.RETRY_SECONDS)
    replicated.wait_replayed()
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert client.get("/v1/usage", headers=auth).status_code == 200
    assert _tables(on_replica.captured_queries) == {"billing_dailyusage"}


@pytest.mark.requires_postgres
def test_replica_restarted_on_an_idle_primary_lags_zero(replicated):
    """A restarted standby's WAL receiver starts at its segment's beginning, before
    what it has replayed: with nothing new from the primary it lags nothing, however
    old its last replayed transaction."""
    agent_register(agent_name="before-restart", owner_identifier="o@x.io")
    replicated.wait_replayed()
    replicated.stop_replica()
    replicated.start_replica()
    connections["replica"].close()
    time.sleep(1.5)  # older than the last replayed transaction by more than 1 s
    receive, replay = replicated.query(
        replicated.replica_url,
        "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text",
    )[0]
    lag = replica.replica_lag()
    assert lag is not None
    assert lag.total_seconds() == 0, (receive, replay, lag)


@pytest.mark.requires_postgres
def test_a_reachable_replica_whose_lag_is_not_known_is_not_called_unreachable(
    replicated, monkeypatch
):
    """A standby with no WAL receiver yet that has replayed nothing since it started
    has no lag to show (LAG_SQL answers NULL): the console says so, and reads stay
    on the replica."""
    monkeypatch.setattr(replica, "LAG_SQL", "SELECT NULL::numeric")
    client = _staff_client()

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        index = client.get("/admin/")

    assert index.status_code == 200
    html = index.content.decode()
    assert 'id="summary-replica">not known (nothing replayed since the replica started)<' in html, (
        html
    )
    assert "billing_dailyusage" in _tables(on_replica.captured_queries)
    assert replica.replica_alias() == "replica"


@pytest.mark.requires_postgres
def test_silent_replica_costs_one_connect_timeout_then_none(replicated):
    hole = BlackHole()
    settings = connections.settings["replica"]
    connections["replica"].close()
    del connections["replica"]
    connections.settings["replica"] = {**settings, "PORT": hole.port}
    try:
        registration = agent_register(agent_name="silent", owner_identifier="o@x.io")
        auth = {"Authorization": f"Bearer {registration.api_key}"}
        client = Client()
        timings = []
        for _ in range(2):
            started = time.monotonic()
            assert client.get("/v1/usage", headers=auth).status_code == 200
            timings.append(time.monotonic() - started)
    finally:
        connections["replica"].close()
        del connections["replica"]
        connections.settings["replica"] = settings
        hole.close()
    assert timings[0] < FALLBACK_BOUND, timings
    assert timings[1] < 0.5, timings  # the breaker skips the replica


def test_without_replica_every_read_is_the_primarys(admin_client):
    assert not replica.replica_configured()
    assert replica.replica_alias() == "default"
    assert replica.replica_lag() is None
    index = admin_client.get("/admin/")
    assert index.status_code == 200
    assert 'id="summary-replica">no replica<' in index.content.decode()
