"""Dependency outages (database, cache): one warning per incident, not one per request.

A dead dependency fails every request that needs it. Logging each failure would
bury the log (and the disk) in identical lines, so each process logs a failing
dependency at most once per LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS, with the count
of failures it did not log, and once more when the dependency answers again.
Every failure is counted in the metrics (lithtrix_dependency_failures_total).
A library's logger that logs each failure with its traceback (the job worker's
django-q) goes through DependencyOutageLogFilter to the same one line.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from django.conf import settings

from lithtrix.core import metrics

logger = logging.getLogger("lithtrix.outages")


class _Incident:
    __slots__ = ("failures", "last_logged", "unlogged")

    def __init__(self) -> None:
        self.failures = 0
        self.last_logged = float("-inf")
        self.unlogged = 0


_incidents: dict[str, _Incident] = {}
_lock = threading.Lock()


def report_failure(dependency: str, exc: BaseException, *, action: str) -> None:
    """``dependency`` failed with ``exc``; ``action`` says what the request got instead.

    Logs only the exception's class: its text may carry a host name or a URL.
    """
    metrics.DEPENDENCY_FAILURES.labels(dependency=dependency).inc()
    now = time.monotonic()
    interval = settings.LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS
    with _lock:
        incident = _incidents.setdefault(dependency, _Incident())
        incident.failures += 1
        if now - incident.last_logged < interval:
            incident.unlogged += 1
            return
        unlogged, incident.unlogged, incident.last_logged = incident.unlogged, 0, now
    logger.warning(
        "%s unavailable (%s): %s%s",
        dependency,
        type(exc).__name__,
        action,
        f"; {unlogged} more failures since the last line" if unlogged else "",
        extra={"dependency": dependency, "error": type(exc).__name__},
    )


def report_success(dependency: str) -> None:
    """``dependency`` answered: close its incident (logged once) if one was open."""
    if dependency not in _incidents:  # the common case: no lock, no work
        return
    with _lock:
        incident = _incidents.pop(dependency, None)
    if incident is not None:
        logger.info(
            "%s available again after %d failed requests",
            dependency,
            incident.failures,
            extra={"dependency": dependency},
        )


# SQLSTATEs of a server that went away or is not taking connections (the client's
# own connection failures carry none): class 08, and admin/crash shutdown, and
# "cannot connect now" (starting up, or a standby not yet open).
_GONE_SQLSTATES = ("57P01", "57P02", "57P03")
# SQLite's for a database another process holds (make run's job worker beside it).
_BUSY_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED")


def is_connection_failure(exc: BaseException) -> bool:
    """Whether a database error is the database not answering (refused, dropped,
    shutting down, busy), not a query or a configuration it refused (a missing
    table, a failed password, a deadlock), which must be seen with its text."""
    from django.db import utils as db_utils

    if isinstance(exc, db_utils.InterfaceError):
        return True
    if not isinstance(exc, db_utils.OperationalError):
        return False
    driver = exc.__cause__
    if isinstance(driver, sqlite3.Error):
        return getattr(driver, "sqlite_errorname", None) in _BUSY_SQLITE
    sqlstate = getattr(driver, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _GONE_SQLSTATES


def _failed_dependency(exc: BaseException | None) -> str | None:
    """ "database" or "cache" when ``exc``, or an exception it was raised from, is that
    dependency not answering; None for anything else (an error raised while handling
    one, its __context__, is not one)."""
    from redis import exceptions as redis_exceptions

    seen = 0
    while exc is not None and seen < 5:
        if is_connection_failure(exc):
            return "database"
        if isinstance(exc, redis_exceptions.ConnectionError | redis_exceptions.TimeoutError):
            return "cache"
        exc = exc.__cause__
        seen += 1
    return None


class DependencyOutageLogFilter(logging.Filter):
    """A record whose exception is the database or Redis not answering becomes the
    outage's warning (report_failure: one line per interval, the rest counted), not
    a traceback each time the library retries. Every other record passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        dependency = _failed_dependency(exc)
        if dependency is None or exc is None:
            return True
        report_failure(dependency, exc, action=f"{record.name}: {record.getMessage()}")
        return False


def reset() -> None:
    """Forget every incident (tests)."""
    with _lock:
        _incidents.clear()
