"""The PostgreSQL backend's round-trip-free health check, and lithtrix.core.db's
prepared statements."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.conf import settings
from django.db import ProgrammingError, connection
from django.test.utils import CaptureQueriesContext

from lithtrix.core import db

pytestmark = pytest.mark.requires_postgres


def _new_request() -> None:
    """What Django does between two requests on a kept connection."""
    setattr(connection, "health_check_enabled", True)  # noqa: B010 - not in the stubs
    setattr(connection, "health_check_done", False)  # noqa: B010


@pytest.mark.django_db(transaction=True)
def test_a_quiet_connection_passes_the_health_check_without_a_query(monkeypatch):
    connection.ensure_connection()
    _new_request()

    def no_round_trip():
        raise AssertionError("SELECT 1 sent to a healthy, idle connection")

    monkeypatch.setattr(connection, "is_usable", no_round_trip)
    connection.close_if_health_check_failed()
    assert connection.connection is not None
    assert getattr(connection, "health_check_done")  # noqa: B009 - not in the stubs


@pytest.mark.skipif(
    settings.DATABASE_POOLING == "pgbouncer",
    reason="PgBouncer keeps the client's connection when a server connection ends",
)
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_closed_is_replaced_before_the_next_query():
    connection.ensure_connection()
    old = connection.connection
    admin = connection.get_connection_params()
    admin.pop("cursor_factory", None)
    admin.pop("context", None)
    with psycopg.connect(**admin, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [old.info.backend_pid])
    deadline = time.monotonic() + 5
    while not select.select([old.fileno()], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, "the server's goodbye never arrived"
    _new_request()

    with connection.cursor() as cursor:  # runs the health check first
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert connection.connection is not old


@pytest.mark.django_db
def test_fetchone_prepares_once_and_logs_like_any_query():
    with CaptureQueriesContext(connection) as captured:
        rows = [db.fetchone("SELECT %(n)s::int + 1", {"n": n}) for n in range(3)]
    assert rows == [(1,), (2,), (3,)]
    assert [q["sql"] for q in captured.captured_queries] == [
        "SELECT 0::int + 1",
        "SELECT 1::int + 1",
        "SELECT 2::int + 1",
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s",
            ["SELECT $1::int + 1"],
        )
        # Behind PgBouncer (transaction pooling) nothing is prepared, and the
        # statements still run (bound by the server, unnamed).
        prepared = 0 if settings.DATABASE_POOLING == "pgbouncer" else 1
        assert cursor.fetchone() == (prepared,)


@pytest.mark.django_db
def test_fetchone_raises_djangos_errors_and_marks_the_connection():
    # Django's error classes (the API's 503 handling and close-on-error rely on them).
    with pytest.raises(ProgrammingError):
        db.fetchone("SELECT n FROM no_such_table WHERE n = %(n)s", {"n": 1})
    assert connection.errors_occurred


def test_fetchone_refuses_an_unknown_durability():
    with pytest.raises(ValueError, match="synchronous_commit"):
        db.fetchone("SELECT 1", {}, synchronous_commit="sometimes")
