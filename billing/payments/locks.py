"""One billing action (setup, cancel, deletion) per agent at a time, without row locks.

Stripe calls take seconds (and up to STRIPE_REQUEST_DEADLINE_SECONDS when Stripe
hangs), so they must never run under a lock that metering needs: the agent row is
locked by nothing here. The lock is a lease row (billing.models.BillingLease), one
per agent, the same on PostgreSQL (behind PgBouncer in any pooling mode: no session
state is kept between statements) and on SQLite:

- acquire is one autocommit statement, an upsert that takes the row when it is
  missing or its lease has expired, and returns the holder now in it; the lease is
  ours iff that is our random token. Busy: poll again a little later, for at most
  STRIPE_BILLING_LOCK_WAIT_SECONDS, then 409 BILLING_IN_PROGRESS with Retry-After.
  No statement waits on a lock held longer than that one statement, and no
  transaction stays open while the block calls Stripe.
- release, in ``finally``, is one DELETE of the row only while it still holds our
  token: it never deletes a newer holder's lease.
- a lease lasts STRIPE_REQUEST_DEADLINE_SECONDS + LEASE_MARGIN_SECONDS (10 + 20 s by
  default), at least as long as gunicorn lets a request run (30 s): a worker that
  crashed or was killed mid-action leaves a lease that expires by itself, and the
  next billing request of that agent takes it over.

Must be entered outside any transaction (the block calls Stripe): inside an atomic
block it raises RuntimeError before writing anything.

Inside the agent's lease, the action also takes one of LITHTRIX_STRIPE_CALL_SLOTS
leases shared by the whole deployment (rows of the same table under fixed ids), or
is refused with 503 at once, never waiting: a Stripe that hangs then holds at most
that many workers, whatever the number of agents trying. An action that may have
nothing to ask Stripe (a cancel) enters the lease with ``stripe_slot=False`` and
takes a slot itself around its Stripe calls.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from billing.models import BillingLease
from lithtrix.core.exceptions import BillingInProgressError, StripeCallsBusyError

logger = logging.getLogger("billing.payments.locks")

_POLL_SECONDS = 0.05
# Added to the Stripe deadline: the durable write after Stripe, dj-stripe's mirror
# and slow database round trips fit in it, and deadline + margin >= gunicorn's
# worker timeout, so a live worker never outlasts its own lease.
LEASE_MARGIN_SECONDS = 20.0

# billing.models.BillingLease's table; each statement commits on its own.
_ACQUIRE_POSTGRESQL = """
    INSERT INTO billing_billinglease (agent_id, holder, expires_at)
    VALUES (%s, %s, clock_timestamp() + %s * interval '1 second')
    ON CONFLICT (agent_id) DO UPDATE
    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE billing_billinglease.expires_at < clock_timestamp()
    RETURNING holder
"""
# SQLite 3.35+ (RETURNING); expires_at compared as Django stores it (UTC text).
_ACQUIRE_SQLITE = """
    INSERT INTO billing_billinglease (agent_id, holder, expires_at) VALUES (%s, %s, %s)
    ON CONFLICT (agent_id) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE billing_billinglease.expires_at < %s
    RETURNING holder
"""
_RELEASE = "DELETE FROM billing_billinglease WHERE agent_id = %s AND holder = %s"


def lease_seconds() -> float:
    return settings.STRIPE_REQUEST_DEADLINE_SECONDS + LEASE_MARGIN_SECONDS


@contextmanager
def agent_billing_lock(
    agent_id: object, *, wait: float | None = None, stripe_slot: bool = True
) -> Iterator[None]:
    """Hold the agent's billing lease for the block; 409 BILLING_IN_PROGRESS after ``wait`` s.

    Then one of the deployment's Stripe call slots (``stripe_call_slot``), or 503 at
    once; with ``stripe_slot=False`` the block takes one itself around its Stripe
    calls, if it makes any. Must be entered outside any transaction: the block calls
    Stripe.
    """
    _require_no_transaction()
    wait = settings.STRIPE_BILLING_LOCK_WAIT_SECONDS if wait is None else wait
    key = BillingLease._meta.pk.get_db_prep_value(agent_id, connection)
    holder = secrets.token_hex(16)
    give_up_at = time.monotonic() + wait
    while not _acquire(key, holder):
        if time.monotonic() >= give_up_at:
            raise BillingInProgressError()
        time.sleep(_POLL_SECONDS)
    try:
        with stripe_call_slot() if stripe_slot else nullcontext():
            yield
    finally:
        _release(key, holder, f"agent {agent_id}")


# The slots' lease ids: fixed, and never an agent's (uuid4 ids are random).
_SLOT_NAMESPACE = uuid.UUID("6f1d3c52-8a4e-4f0b-9c61-2b7e5d9a0c11")


def slot_ids(count: int) -> list[uuid.UUID]:
    return [uuid.uuid5(_SLOT_NAMESPACE, f"stripe-call-slot-{n}") for n in range(count)]


@contextmanager
def stripe_call_slot() -> Iterator[None]:
    """Hold one of LITHTRIX_STRIPE_CALL_SLOTS for the block, else 503 at once."""
    count = settings.LITHTRIX_STRIPE_CALL_SLOTS
    if count <= 0:
        yield
        return
    holder = secrets.token_hex(16)
    for slot in slot_ids(count):
        key = BillingLease._meta.pk.get_db_prep_value(slot, connection)
        if _acquire(key, holder):
            break
    else:
        raise StripeCallsBusyError()
    try:
        yield
    finally:
        _release(key, holder, f"Stripe call slot {slot}")


def _require_no_transaction() -> None:
    # Django's own check: a durable block refuses to open inside another atomic block,
    # except the ones a test case wraps each test in (there the lease is written in
    # the test's transaction and rolled back with it). Opening and closing an empty
    # block sends no statement.
    try:
        with transaction.atomic(durable=True):
            pass
    except RuntimeError:
        nested = True
    else:
        nested = False
    if nested or (not connection.in_atomic_block and not connection.get_autocommit()):
        raise RuntimeError(
            "agent_billing_lock must be entered outside any transaction: "
            "its block calls Stripe, and no transaction may stay open across that."
        )


def _acquire(key: Any, holder: str) -> bool:
    if connection.vendor == "postgresql":
        # The database's clock, one for every worker and host.
        sql = _ACQUIRE_POSTGRESQL
        params: list[Any] = [key, holder, lease_seconds()]
    else:
        # SQLite (3.35+ for RETURNING): one file, one host, the process clock.
        field = BillingLease._meta.get_field("expires_at")
        now = timezone.now()
        sql = _ACQUIRE_SQLITE
        params = [
            key,
            holder,
            field.get_db_prep_value(now + timedelta(seconds=lease_seconds()), connection),
            field.get_db_prep_value(now, connection),
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return rows == [(holder,)]


def _release(key: Any, holder: str, what: str) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(_RELEASE, [key, holder])
            released = cursor.rowcount
    except DatabaseError:
        # Never hide the block's own outcome: the lease expires by itself.
        logger.exception("%s: billing lease not released; it expires by itself", what)
        return
    if released != 1:
        logger.warning(
            "%s: billing lease expired before the action ended (over %.0f s); "
            "another request may have run beside it",
            what,
            lease_seconds(),
        )
