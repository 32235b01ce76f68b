"""Stripe's events: stored when their signed webhook arrives, applied later by a job.

The webhook (billing.payments.webhooks) only checks the signature and calls
``event_receive``: one StripeEventReceipt per Stripe event id and, in the same
transaction, the job that applies it. Stripe gets its 200 without waiting for Stripe.

The job, ``stripe_event_apply``, first re-reads the event's object from Stripe and
mirrors it and the event into dj-stripe's tables (dj-stripe's own sync), with no
transaction of ours open; then one short transaction runs what the project does
with the event (RECEIVERS) and marks it applied. (dj-stripe's Event.process would
call Stripe inside its transaction.) Each event id is applied once; a failure
(Stripe down, the database away) is tried again later with a growing delay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task
from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from billing.models import StripeEventReceipt
from billing.payments import records, stripe_calls, stripe_client
from billing.payments.mirror import mirror, stripe_id, stripe_missing
from events.jobs import retry_with_backoff
from lithtrix.core.exceptions import PaymentProviderError

logger = logging.getLogger("billing.payments.stripe_events")

APPLY_TASK = "billing.payments.stripe_events.stripe_event_apply"


# --- receiving ------------------------------------------------------------------


def event_receive(*, event: dict) -> bool:
    """Store a signed event and enqueue its job, in one transaction; True when it is new.

    Once per Stripe event id (Stripe delivers at least once: a replay stores and
    enqueues nothing). Two statements and the commit: the webhook answers fast.
    """
    receipt = StripeEventReceipt(
        id=event["id"],
        type=str(event.get("type", ""))[:255],
        body=event,
        received_at=timezone.now(),
    )
    with transaction.atomic(durable=True):
        if not _insert_new(receipt):
            return False
        async_task(APPLY_TASK, event["id"], task_name=f"stripe_event_apply:{event['id']}")
    return True


def _insert_new(receipt: StripeEventReceipt) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: one round trip (PostgreSQL, SQLite 3.35+)."""
    names = ("id", "type", "body", "received_at")
    params = [
        StripeEventReceipt._meta.get_field(name).get_db_prep_save(  # type: ignore[union-attr]
            getattr(receipt, name), connection
        )
        for name in names
    ]
    columns = ", ".join(connection.ops.quote_name(name) for name in names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {StripeEventReceipt._meta.db_table} ({columns}, attempts, last_error) "  # noqa: S608 - our names
            "VALUES (%s, %s, %s, %s, 0, '') ON CONFLICT (id) DO NOTHING RETURNING id",
            params,
        )
        return cursor.fetchone() is not None


# --- applying -------------------------------------------------------------------


@retry_with_backoff
def stripe_event_apply(event_id: str) -> str:
    """Apply one stored Stripe event; idempotent (an applied event is skipped).

    Order does not matter: dj-stripe re-reads the object's current state from
    Stripe, and the receivers decide on that state, never on the event's copy.
    A failure (Stripe down, the database away) raises: the job is tried again
    with backoff (events.jobs.retry_with_backoff, LITHTRIX_JOB_*), and the
    periodic reconciliation repairs what an abandoned event would have.
    """
    receipt = StripeEventReceipt.objects.filter(pk=event_id).first()
    if receipt is None or receipt.applied_at is not None:
        return "skipped"
    try:
        with stripe_client.deadline():
            event = _mirror_with_current_object(receipt.body)
        receiver = RECEIVERS.get(event.type)
        with transaction.atomic(durable=True):
            marked = StripeEventReceipt.objects.filter(pk=event_id, applied_at__isnull=True).update(
                applied_at=timezone.now(), attempts=F("attempts") + 1
            )
            if marked and receiver is not None:
                receiver(event=event)
    except Exception as exc:
        # Stripe's own error, when there is one, says more than its translation.
        cause = exc.__cause__ if isinstance(exc, PaymentProviderError) and exc.__cause__ else exc
        StripeEventReceipt.objects.filter(pk=event_id).update(
            attempts=F("attempts") + 1, last_error=f"{type(cause).__name__}: {cause}"[:255]
        )
        logger.warning("Stripe event %s (%s) not applied: %r", event_id, receipt.type, exc)
        raise
    logger.info("Stripe event %s (%s) applied", event_id, receipt.type)
    return "applied"


def _mirror_with_current_object(body: dict) -> djstripe_models.Event:
    """The event's object as Stripe has it now, and the event, mirrored; Stripe's calls
    and dj-stripe's sync, with no transaction of ours open."""
    obj = body.get("data", {}).get("object", {})
    retrieve = _RETRIEVE.get(str(obj.get("object", "")))
    if retrieve is not None and obj.get("id"):
        try:
            current = retrieve(obj["id"])
        except PaymentProviderError as exc:
            if not stripe_missing(exc):
                raise
            # Deleted on Stripe's side since: nothing left to mirror; the receiver
            # decides on what the mirror holds.
            logger.warning(
                "Stripe event %s (%s): object %s no longer exists on Stripe",
                body.get("id"),
                body.get("type"),
                obj["id"],
            )
        else:
            mirror(**{str(obj["object"]): current})
    return mirror(event=body)


# How an event's object is read again from Stripe, by its "object" name.
_RETRIEVE = {
    "subscription": lambda id_: stripe_calls.subscription_retrieve(subscription_id=id_),
    "invoice": lambda id_: stripe_calls.invoice_retrieve(invoice_id=id_),
}


# --- what the project does with each event (dj-stripe's signals) ----------------


def _agent_of_customer(customer: Any) -> Agent | None:
    customer_id = stripe_id(customer)
    if not customer_id:
        return None
    return Agent.objects.filter(stripe_customer_id=customer_id).first()


@transaction.atomic
def subscription_event_apply(*, event: djstripe_models.Event) -> bool:
    """Put the agent back on Free when its subscription stopped entitling it to Pro.

    Decides on the current state, not on the event: dj-stripe has just re-fetched
    the subscription from Stripe and mirrored it. A duplicate, late or
    out-of-order event therefore changes nothing the current state does not call
    for, and the tier changes once. Returns True when it changed it.
    """
    data = event.data["object"]
    agent = _agent_of_customer(data.get("customer"))
    if agent is None:
        logger.info("event %s: no agent for customer %s", event.id, data.get("customer"))
        return False
    customer_id = agent.stripe_customer_id
    subscriptions = list(djstripe_models.Subscription.objects.filter(customer_id=customer_id))
    if any(s.status in stripe_client.ENTITLED_STATUSES for s in subscriptions):
        return False
    current = next((s for s in subscriptions if s.id == data["id"]), None)
    status = current.status if current is not None else data.get("status")
    if status not in stripe_client.DOWNGRADE_STATUSES:
        return False
    facts = {"event_id": event.id, "subscription_id": data["id"], "status": status}
    changed = records.tier_change(
        agent=agent,
        tier=Tier.FREE,
        reason=f"Stripe subscription {data['id']} is {status}.",
        event_reason=f"subscription_{status}",
        data=facts,
    )
    if changed:
        AgentEvent.objects.create(
            agent=agent,
            kind=AgentEvent.Kind.SUBSCRIPTION_ENDED,
            reason=f"Stripe subscription {data['id']} is {status}; back on Free.",
            data=facts,
        )
        logger.info("agent %s back on free: subscription %s %s", agent.pk, data["id"], status)
    return changed


@transaction.atomic
def invoice_payment_failed_record(*, event: djstripe_models.Event) -> bool:
    """Record a failed invoice payment on the agent's audit trail, once per event."""
    invoice = event.data["object"]
    agent = _agent_of_customer(invoice.get("customer"))
    if agent is None:
        return False
    if AgentEvent.objects.filter(
        agent=agent, kind=AgentEvent.Kind.PAYMENT_FAILED, data__event_id=event.id
    ).exists():
        return False
    records.payment_failed(agent=agent, event_id=event.id, invoice=invoice)
    logger.info("agent %s: invoice %s payment failed", agent.pk, invoice.get("id"))
    return True


# The events the project acts on, each with its receiver (run in the job's short
# transaction, after the object was mirrored); Stripe is asked to send exactly
# these (webhook endpoints are created with WEBHOOK_EVENTS).
RECEIVERS: dict[str, Callable[..., bool]] = {
    "customer.subscription.deleted": subscription_event_apply,
    "customer.subscription.updated": subscription_event_apply,
    "invoice.payment_failed": invoice_payment_failed_record,
}
WEBHOOK_EVENTS = list(RECEIVERS)
