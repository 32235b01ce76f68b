"""One fixed SQL statement on the hot path, as a prepared statement where allowed.

Django's PostgreSQL cursors bind parameters client-side, so PostgreSQL parses and
plans every statement again. The few statements every metered call runs (the key
lookup, the metering statement) go through ``fetchone`` instead: a server-binding
psycopg cursor on Django's own connection, prepared once per connection when the
connection allows it (``OPTIONS["prepare_threshold"]`` not None, see
lithtrix/settings/database.py; PgBouncer in transaction mode without prepared
statement support turns it off) and executed with bound parameters otherwise.
Django's error translation, execute wrappers and query log still apply.

``synchronous_commit`` other than "on" runs the statement in its own transaction
with ``SET LOCAL synchronous_commit``: BEGIN, SET, the statement and COMMIT go out
in one round trip (psycopg's pipeline mode). Inside an atomic block the statement
simply joins the transaction, whose commit stays as durable as configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

from django.db import connection

SYNCHRONOUS_COMMIT_VALUES = ("on", "off", "local", "remote_write", "remote_apply")


def fetchone(
    sql: str,
    params: Mapping[str, Any] | Sequence[Any],
    *,
    synchronous_commit: str = "on",
) -> tuple | None:
    """Run ``sql`` (PostgreSQL only) and return its first row, or None.

    Plainly: one send and one wait (psycopg's C wait). An overlap with the Redis
    round trip (psycopg's pipeline mode, the Redis command sent while the statement
    was on its way) was measured and dropped: it cost a request about 80 us more
    CPU and twice the poll() calls, and under load /v1/me served 20-25 % fewer
    requests with it (README, "Benchmark").
    """
    if synchronous_commit not in SYNCHRONOUS_COMMIT_VALUES:
        raise ValueError(f"synchronous_commit must be one of {SYNCHRONOUS_COMMIT_VALUES}")
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw_connection = connection.connection
    prepare = raw_connection.prepare_threshold is not None
    import psycopg

    with connection.wrap_database_errors:
        raw_cursor = psycopg.Cursor(raw_connection)
    # Django's wrapper (its query log in tests, execute_wrappers, error mapping)
    # around the server-binding cursor.
    cursor = cast(Any, connection)._prepare_cursor(_Prepared(raw_cursor, prepare))
    if synchronous_commit == "on" or connection.in_atomic_block:
        with cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    with cursor, connection.wrap_database_errors:
        control = psycopg.Cursor(raw_connection)
        try:
            with raw_connection.pipeline():
                control.execute("BEGIN")
                control.execute(f"SET LOCAL synchronous_commit TO {synchronous_commit}")
                cursor.execute(sql, params)
                control.execute("COMMIT")
        except BaseException:
            if raw_connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raw_connection.rollback()
            raise
        finally:
            control.close()
        return cursor.fetchone()


class _Prepared:
    """A psycopg cursor whose execute() asks for a prepared statement."""

    __slots__ = ("_cursor", "_last", "_prepare")

    def __init__(self, cursor: Any, prepare: bool) -> None:
        self._cursor = cursor
        self._prepare = prepare
        self._last: tuple[str, Any] = ("", None)

    def execute(self, sql: str, params: Any = None) -> Any:
        self._last = (sql, params)
        return self._cursor.execute(sql, params, prepare=self._prepare or None)

    @property
    def _query(self) -> SimpleNamespace:
        # What Django's query log reads (connection.ops.last_executed_query, only
        # while queries are logged): the statement with its parameters inlined.
        return SimpleNamespace(query=cast(Any, connection.ops).compose_sql(*self._last).encode())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)
