"""The per-agent billing lease (billing/payments/locks.py): taken, refused, expired, released."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from billing.models import BillingLease
from billing.payments.locks import agent_billing_lock, lease_seconds, slot_ids
from lithtrix.core.exceptions import BillingInProgressError, StripeCallsBusyError

MARGIN = 1.0


def _in_thread(fn) -> threading.Thread:
    def run():
        try:
            fn()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _lease_seen_by_another_connection(agent_id) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    thread = _in_thread(
        lambda: seen.extend(
            BillingLease.objects.filter(agent_id=agent_id).values_list("holder", "expires_at")
        )
    )
    thread.join(timeout=10)
    return seen


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_holder_waits_then_gets_409_and_takes_its_turn_after_release():
    agent_id, other_id = uuid.uuid4(), uuid.uuid4()
    held, let_go, errors = threading.Event(), threading.Event(), []

    def hold():
        try:
            with agent_billing_lock(agent_id, wait=0):
                held.set()
                let_go.wait(timeout=10)
        except Exception as exc:  # surfaced by the assertions below
            errors.append(exc)
            held.set()

    thread = _in_thread(hold)
    try:
        assert held.wait(timeout=10)
        started = time.monotonic()
        with (
            pytest.raises(BillingInProgressError) as refused,
            agent_billing_lock(agent_id, wait=0.4),
        ):
            pytest.fail("entered a lease another connection holds")
        waited = time.monotonic() - started
        # Another agent's billing is not held up at all.
        with agent_billing_lock(other_id, wait=0):
            assert BillingLease.objects.filter(agent_id=other_id).count() == 1
    finally:
        let_go.set()
        thread.join(timeout=10)

    assert errors == []
    assert 0.4 <= waited < 0.4 + MARGIN, waited
    error = refused.value
    assert (error.status_code, error.error_code) == (409, "BILLING_IN_PROGRESS")
    assert error.headers["Retry-After"] == "2"
    # Released by its holder: the next request gets it at once, and leaves nothing behind.
    with agent_billing_lock(agent_id, wait=0):
        assert BillingLease.objects.filter(agent_id=agent_id).count() == 1
    assert not BillingLease.objects.exists()


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_of_several_connections_racing_for_one_agent_exactly_one_wins():
    agent_id = uuid.uuid4()
    racers = 4
    start = threading.Barrier(racers)
    outcomes: list[str] = []
    guard = threading.Lock()

    def race():
        start.wait(timeout=10)
        try:
            with agent_billing_lock(agent_id, wait=0):
                time.sleep(0.3)  # still held while the others try
                outcome = "taken"
        except BillingInProgressError:
            outcome = "refused"
        with guard:
            outcomes.append(outcome)

    threads = [_in_thread(race) for _ in range(racers)]
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(outcomes) == ["refused"] * (racers - 1) + ["taken"]
    assert not BillingLease.objects.exists()


@pytest.mark.django_db
def test_a_live_lease_of_someone_else_is_refused_and_left_alone():
    agent_id = uuid.uuid4()
    until = timezone.now() + timedelta(seconds=60)
    BillingLease.objects.create(agent_id=agent_id, holder="live-holder", expires_at=until)

    started = time.monotonic()
    with pytest.raises(BillingInProgressError), agent_billing_lock(agent_id, wait=0.2):
        pytest.fail("entered a live lease")
    waited = time.monotonic() - started

    assert 0.2 <= waited < 0.2 + MARGIN, waited
    lease = BillingLease.objects.get(agent_id=agent_id)
    assert (lease.holder, lease.expires_at) == ("live-holder", until)


@pytest.mark.django_db
def test_an_expired_lease_is_taken_over_and_the_new_one_lasts_deadline_plus_margin(settings):
    settings.STRIPE_REQUEST_DEADLINE_SECONDS = 10
    agent_id = uuid.uuid4()
    BillingLease.objects.create(
        agent_id=agent_id,
        holder="crashed-worker",
        expires_at=timezone.now() - timedelta(seconds=1),
    )

    with agent_billing_lock(agent_id, wait=0):
        lease = BillingLease.objects.get(agent_id=agent_id)
        left = (lease.expires_at - timezone.now()).total_seconds()

    assert lease.holder != "crashed-worker" and len(lease.holder) == 32
    assert lease_seconds() == 30
    assert 30 - 5 < left <= 30, left
    assert not BillingLease.objects.filter(agent_id=agent_id).exists()


@pytest.mark.django_db
def test_release_never_deletes_a_newer_holders_lease(caplog):
    agent_id = uuid.uuid4()
    newer_until = timezone.now() + timedelta(seconds=60)

    with (
        caplog.at_level(logging.WARNING, logger="billing.payments.locks"),
        agent_billing_lock(agent_id, wait=0),
    ):
        # Ours expired mid-action and another request took the row over.
        BillingLease.objects.filter(agent_id=agent_id).update(
            holder="newer-holder", expires_at=newer_until
        )

    lease = BillingLease.objects.get(agent_id=agent_id)
    assert (lease.holder, lease.expires_at) == ("newer-holder", newer_until)
    assert "expired before the action ended" in caplog.text
    # And the newer lease still keeps everyone else out.
    with pytest.raises(BillingInProgressError), agent_billing_lock(agent_id, wait=0):
        pytest.fail("entered a lease another request holds")


@pytest.mark.django_db
def test_an_exception_in_the_block_releases_the_lease():
    agent_id = uuid.uuid4()

    with pytest.raises(ValueError, match="Stripe said no"), agent_billing_lock(agent_id, wait=0):
        raise ValueError("Stripe said no")

    assert not BillingLease.objects.filter(agent_id=agent_id).exists()
    with agent_billing_lock(agent_id, wait=0):
        pass


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_committed_at_once_and_no_transaction_stays_open():
    agent_id = uuid.uuid4()

    with agent_billing_lock(agent_id, wait=0):
        # What the block runs (Stripe) runs with no transaction open...
        assert connection.get_autocommit() and not connection.in_atomic_block
        # ...and the lease is already visible to every other connection.
        seen = _lease_seen_by_another_connection(agent_id)
        ours = BillingLease.objects.get(agent_id=agent_id)

    assert seen == [(ours.holder, ours.expires_at)]
    assert _lease_seen_by_another_connection(agent_id) == []


@pytest.mark.django_db(transaction=True)
def test_entering_it_inside_an_atomic_block_raises_and_writes_nothing():
    agent_id = uuid.uuid4()

    with (
        transaction.atomic(),
        pytest.raises(RuntimeError, match="outside any transaction"),
        agent_billing_lock(agent_id, wait=0),
    ):
        pytest.fail("entered a billing lease inside a transaction")

    transaction.set_autocommit(False)
    try:
        with (
            pytest.raises(RuntimeError, match="outside any transaction"),
            agent_billing_lock(agent_id, wait=0),
        ):
            pytest.fail("entered a billing lease with autocommit off")
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)

    assert not BillingLease.objects.exists()


# --- the deployment's Stripe call slots (LITHTRIX_STRIPE_CALL_SLOTS) ---------------


@pytest.mark.django_db(transaction=True)
def test_past_the_stripe_call_slots_an_action_is_refused_at_once(settings):
    settings.LITHTRIX_STRIPE_CALL_SLOTS = 2
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    with agent_billing_lock(first, wait=0), agent_billing_lock(second, wait=0):
        started = time.monotonic()
        with pytest.raises(StripeCallsBusyError) as refused, agent_billing_lock(third, wait=2):
            pytest.fail("a third action ran beside two in Stripe")
        waited = time.monotonic() - started
        # Never waits (a worker waiting here would be held all the same), and gives
        # the third agent's own lease back.
        assert waited < MARGIN, waited
        assert not BillingLease.objects.filter(agent_id=third).exists()
        taken = set(BillingLease.objects.values_list("agent_id", flat=True))
        assert taken == {first, second, *slot_ids(2)}

    error = refused.value
    assert (error.status_code, error.error_code) == (503, "SERVICE_UNAVAILABLE")
    assert error.headers["Retry-After"] == "5"
    # Both slots free again: the third agent's action runs now.
    with agent_billing_lock(third, wait=0):
        pass
    assert not BillingLease.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_without_stripe_call_slots_any_number_of_actions_run(settings):
    settings.LITHTRIX_STRIPE_CALL_SLOTS = 0
    agents = [uuid.uuid4() for _ in range(4)]

    with contextlib.ExitStack() as stack:
        for agent_id in agents:
            stack.enter_context(agent_billing_lock(agent_id, wait=0))
        held = set(BillingLease.objects.values_list("agent_id", flat=True))

    assert held == set(agents)


@pytest.mark.django_db(transaction=True)
def test_a_slot_left_by_a_dead_worker_is_taken_over_once_expired(settings):
    settings.LITHTRIX_STRIPE_CALL_SLOTS = 1
    (slot,) = slot_ids(1)
    BillingLease.objects.create(
        agent_id=slot, holder="killed-worker", expires_at=timezone.now() + timedelta(seconds=60)
    )
    with pytest.raises(StripeCallsBusyError), agent_billing_lock(uuid.uuid4(), wait=0):
        pytest.fail("ran while the only slot was live")

    BillingLease.objects.filter(agent_id=slot).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with agent_billing_lock(uuid.uuid4(), wait=0):
        assert BillingLease.objects.get(agent_id=slot).holder != "killed-worker"
    assert not BillingLease.objects.filter(agent_id=slot).exists()


@pytest.mark.django_db
def test_a_409_billing_in_progress_is_not_kept_under_its_idempotency_key(
    local_stripe, settings, api_client, registered
):
    from accounts.models import Agent, Tier
    from idempotency.models import IdempotencyRecord

    settings.STRIPE_BILLING_LOCK_WAIT_SECONDS = 0.1
    # Another billing request of the agent holds its lease.
    BillingLease.objects.create(
        agent_id=registered.agent.pk,
        holder="another-request",
        expires_at=timezone.now() + timedelta(seconds=lease_seconds()),
    )
    request = {
        "path": "/v1/billing/setup",
        "data": {"payment_method_id": "pm_card_visa"},
        "format": "json",
        "HTTP_IDEMPOTENCY_KEY": "setup-while-busy-0001",
        **registered.auth,
    }

    refused = api_client.post(**request)
    assert (refused.status_code, refused.json()["error_code"]) == (409, "BILLING_IN_PROGRESS")
    assert refused["Retry-After"] == "2"
    assert not IdempotencyRecord.objects.exists()

    # The other request ends; the retry Retry-After asked for runs, it is no replay.
    BillingLease.objects.filter(agent_id=registered.agent.pk).delete()
    retried = api_client.post(**request)
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried
    assert Agent.objects.get(pk=registered.agent.pk).tier == Tier.PRO
    assert api_client.post(**request)["Idempotent-Replayed"] == "true"
