"""Dependency outages (database, cache): one warning per incident, not one per request.

A dead dependency fails every request that needs it. Logging each failure would
bury the log (and the disk) in identical lines, so each process logs a failing
dependency at most once per LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS, with the count
of failures it did not log, and once more when the dependency answers again.
Every failure is counted in the metrics (lithtrix_dependency_failures_total).
"""

from __future__ import annotations

import logging
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


def reset() -> None:
    """Forget every incident (tests)."""
    with _lock:
        _incidents.clear()
