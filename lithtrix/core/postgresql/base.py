"""Django's PostgreSQL backend with a health check that costs no round trip.

With CONN_HEALTH_CHECKS, Django sends ``SELECT 1`` before the first query of every
request that reuses a connection: one more round trip per request. A connection
the server (or a pooler) has closed always leaves something to read on its socket
(the server's FATAL message, then end-of-file); an open, idle connection never
does. So: nothing to read -> healthy, no query; something to read -> Django's own
check (``SELECT 1``), which closes the connection if it fails. A connection whose
peer vanished without a word is caught by neither check until a query times out.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base

from lithtrix.core import outages


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's own attributes (BaseDatabaseWrapper), missing from its type stubs.
    health_check_enabled: bool
    health_check_done: bool

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and _idle_and_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        # PostgreSQL answers: a database outage this process logged is over (one
        # line, lithtrix.core.outages), whichever request or probe met it first.
        outages.report_success("database")
        return connection


def _idle_and_quiet(connection) -> bool:
    """True if the psycopg connection is open, idle, and nothing waits to be read."""
    if connection.closed or connection.broken:
        return False
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
