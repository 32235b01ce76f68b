"""One billing action (setup, cancel, deletion) per agent at a time, without row locks.

Stripe calls take seconds (and up to STRIPE_REQUEST_DEADLINE_SECONDS when Stripe
hangs), so they must never run under a lock that metering needs: the agent row is
locked by nothing here. On PostgreSQL the lock is a session-level advisory lock
keyed on the agent id, taken with pg_try_advisory_lock in a short polling loop
(no statement ever waits on it) and released in ``finally``; a connection that
dies releases it too. Elsewhere (SQLite: development and single-process tests) a
process-local lock stands in.

Session-level advisory locks need the same server connection for lock and unlock:
behind PgBouncer that means session pooling (transaction pooling would lose it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from lithtrix.errors import ApiError

_POLL_SECONDS = 0.05
_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


class BillingInProgressError(ApiError):
    status_code = 409
    error_code = "BILLING_IN_PROGRESS"
    default_message = (
        "Another billing request of this agent is still running. Retry in a few seconds."
    )

    def __init__(self, message: str | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", "2")


def _advisory_key(agent_id: str) -> int:
    # A signed 64-bit key derived from the id (namespaced so other advisory locks
    # in the same database cannot collide by accident).
    digest = hashlib.blake2b(f"lithtrix-billing:{agent_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def agent_billing_lock(agent_id: object, *, wait: float | None = None) -> Iterator[None]:
    """Hold the agent's billing lock for the block; 409 BILLING_IN_PROGRESS after ``wait`` s.

    Must be entered outside any transaction: the block calls Stripe.
    """
    wait = settings.STRIPE_BILLING_LOCK_WAIT_SECONDS if wait is None else wait
    if connection.vendor == "postgresql":
        with _advisory_lock(_advisory_key(str(agent_id)), wait=wait):
            yield
    else:
        with _local_lock(str(agent_id), wait=wait):
            yield


@contextmanager
def _advisory_lock(key: int, *, wait: float) -> Iterator[None]:
    give_up_at = time.monotonic() + wait
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            (taken,) = cursor.fetchone()
        if taken:
            break
        if time.monotonic() >= give_up_at:
            raise BillingInProgressError()
        time.sleep(_POLL_SECONDS)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@contextmanager
def _local_lock(agent_id: str, *, wait: float) -> Iterator[None]:
    with _local_locks_guard:
        lock = _local_locks.setdefault(agent_id, threading.Lock())
    if not lock.acquire(timeout=wait):
        raise BillingInProgressError()
    try:
        yield
    finally:
        lock.release()
