"""Reads that may lag, from the streaming replica (DATABASE_REPLICA_URL).

Only reads named here go to the replica, each by an explicit ``.using()``: the
staff console's lists, the admin index's usage summary and /v1/usage's history.
A router guessing which reads may lag would also send authentication, metering
and reads-after-write there; one explicit alias per read cannot.

Without a replica, or while it is unreachable, every read goes to the primary. A
failure (refused, timed out, broken) makes this process skip the replica for
``LITHTRIX_REPLICA_RETRY_SECONDS``: at most one request per process and period
waits for its connect timeout.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError, InterfaceError, OperationalError

REPLICA = "replica"
RETRY_SECONDS = settings.LITHTRIX_REPLICA_RETRY_SECONDS

logger = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_skip_until = 0.0


def replica_configured() -> bool:
    return REPLICA in connections.settings


def reset_breaker() -> None:
    global _skip_until
    with _lock:
        _skip_until = 0.0


def _trip(error: Exception) -> None:
    global _skip_until
    with _lock:
        _skip_until = time.monotonic() + RETRY_SECONDS
    connections[REPLICA].close()
    logger.warning(
        "replica unreachable, reading from the primary for %ss: %s",
        RETRY_SECONDS,
        type(error).__name__,
    )


def replica_alias() -> str:
    """ "replica" when one is configured and answers, else "default".

    Connects now (a no-op on an open, healthy connection), so a replica that is
    down is found here rather than halfway through rendering a page.
    """
    if not replica_configured() or time.monotonic() < _skip_until:
        return DEFAULT_DB_ALIAS
    connection = connections[REPLICA]
    try:
        # Django's per-request checks, here as well: a connection the replica closed
        # when it stopped is found now (and a new one refused), not by the query.
        connection.close_if_unusable_or_obsolete()
        connection.close_if_health_check_failed()
        connection.ensure_connection()
    except (OperationalError, InterfaceError) as error:
        _trip(error)
        return DEFAULT_DB_ALIAS
    return REPLICA


def read_from_replica(read: Callable[[str], T]) -> T:
    """``read(alias)`` on the replica; once more on the primary if the replica fails
    meanwhile. ``read`` must evaluate its querysets (list(), aggregate())."""
    alias = replica_alias()
    if alias == DEFAULT_DB_ALIAS:
        return read(alias)
    try:
        return read(alias)
    except (OperationalError, InterfaceError) as error:
        _trip(error)
        return read(DEFAULT_DB_ALIAS)


# How far the replica is behind: zero when it has replayed all it received (an idle
# primary sends nothing, and now() - last replay would grow without any lag). A
# restarted standby's receiver reports the start of its segment, before what it has
# already replayed: that too is nothing left to replay (for as long as the receiver
# streams that segment again, a lag that is real is shown as zero). Zero also for a
# server that is not a standby (a promoted replica): nothing replays there. NULL
# while the standby has no receiver and has replayed nothing since it started.
LAG_SQL = """
SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END
"""


def replica_lag() -> datetime.timedelta | None:
    """The replica's replay lag; None without a reachable replica, or while the lag
    is not known (see LAG_SQL)."""
    if replica_alias() != REPLICA:
        return None
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(LAG_SQL)
            row = cursor.fetchone()
    except (OperationalError, InterfaceError) as error:
        _trip(error)
        return None
    except DatabaseError:
        return None
    seconds = row[0] if row else None
    return None if seconds is None else datetime.timedelta(seconds=float(seconds))


class PrimaryRouter:
    """Every write and every migration on the primary.

    Reads are not routed (they go to "default" unless a read says ``.using()``), but
    an object read from the replica would otherwise be saved back to the replica.
    """

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # The replica holds the primary's rows.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS
