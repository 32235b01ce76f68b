"""The end of Pro: POST /v1/billing/cancel, and every subscription ended at deletion.

Stripe is reached only through billing.payments.stripe_client; dj-stripe's tables mirror
what Stripe answered. Services never import DRF.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_q.tasks import async_task

from accounts.models import Agent, Tier
from billing.payments import locks, records, stripe_calls, stripe_client
from billing.payments.mirror import (
    live_subscriptions,
    mirror,
    stripe_missing,
)
from billing.payments.selectors import subscription_cancel_at
from events.jobs import retry_with_backoff
from lithtrix.core.exceptions import PaymentProviderError

logger = logging.getLogger("billing.payments.cancel")

DELETED_AGENT_END_TASK = "billing.payments.cancel.deleted_agent_subscriptions_end_job"


def _live_unless_forgotten(customer_id: str) -> list[Any] | None:
    """The customer's live subscriptions; None when Stripe no longer knows the customer
    (that is "no subscription", not an outage)."""
    try:
        return live_subscriptions(customer_id)
    except PaymentProviderError as exc:
        if stripe_missing(exc):
            return None
        raise


def _cancel_at_period_end(subscription_id: str) -> Any:
    """The subscription set to cancel at period end; None when Stripe no longer has it."""
    try:
        return stripe_calls.subscription_cancel_at_period_end(
            subscription_id=subscription_id, cancel=True
        )
    except PaymentProviderError as exc:
        if stripe_missing(exc):
            return None
        raise


@dataclass(frozen=True)
class Cancellation:
    tier: str
    cancel_at: datetime.datetime | None


def billing_cancel(*, agent: Agent) -> Cancellation:
    """Pro -> Free, at the end of the paid period when there is a subscription.

    Guarantees:
    - With a live subscription: Stripe sets it to cancel at period end
      (cancel_at_period_end); the agent stays Pro until Stripe deletes it
      (customer.subscription.deleted ends Pro). Card-on-file Pro (no
      subscription): Free at once.
    - Idempotent: a repeated call changes nothing and answers the same; a Free
      agent gets tier free without any Stripe call.
    - Stripe first, within the request deadline and under the agent's billing lock
      (no row lock, no transaction), then one durable transaction for the tier
      and the audit row. A Stripe failure: PaymentProviderError, nothing changed.
    """
    # A Stripe call slot only when Stripe is called: a Free agent's (or a customer-less
    # Pro's) cancel is answered even while every slot is taken.
    with locks.agent_billing_lock(agent.pk, stripe_slot=False):
        return _cancel_locked(agent=agent)


def _cancel_locked(*, agent: Agent) -> Cancellation:
    current = Agent.objects.get(pk=agent.pk)
    if current.tier == Tier.FREE:
        return Cancellation(tier=Tier.FREE, cancel_at=None)
    live: list[Any] | None = []
    requested = []
    if current.stripe_customer_id:
        stripe_client.require_configured()
        with locks.stripe_call_slot(), stripe_client.deadline():
            live = _live_unless_forgotten(current.stripe_customer_id)
            for subscription in live or []:
                if subscription_cancel_at(subscription) is None:
                    updated = _cancel_at_period_end(subscription["id"])
                    live.remove(subscription)  # type: ignore[union-attr]  # not None here
                    if updated is not None:
                        live.append(updated)  # type: ignore[union-attr]
                        requested.append(subscription["id"])
            for subscription in live or []:
                mirror(subscription=subscription)

    if live is None:
        with transaction.atomic(durable=True):
            records.customer_forget(
                agent=current, customer_id=str(current.stripe_customer_id), action="cancel"
            )
        agent.tier, agent.stripe_customer_id = Tier.FREE, None
        logger.info("agent %s: Stripe no longer knows its customer; free now", current.pk)
        return Cancellation(tier=Tier.FREE, cancel_at=None)
    if not live:
        with transaction.atomic(durable=True):
            records.tier_change(
                agent=current,
                tier=Tier.FREE,
                reason="Pro cancelled through POST /v1/billing/cancel (no subscription).",
                event_reason="cancel",
                data={"stripe_customer_id": current.stripe_customer_id},
            )
        agent.tier = Tier.FREE
        logger.info("agent %s cancelled card-on-file pro: free now", current.pk)
        return Cancellation(tier=Tier.FREE, cancel_at=None)

    cancel_at = max(
        (at for at in (subscription_cancel_at(s) for s in live) if at is not None),
        default=None,
    )
    if requested:
        with transaction.atomic(durable=True):
            records.cancel_scheduled(agent=current, subscription_ids=requested, cancel_at=cancel_at)
        logger.info("agent %s: subscriptions %s cancel at %s", current.pk, requested, cancel_at)
    return Cancellation(tier=Tier.PRO, cancel_at=cancel_at)


def subscriptions_cancel_now(*, agent: Agent) -> list[str]:
    """End every live subscription of the agent at once (not at period end).

    For account deletion: Stripe stops charging before the agent is erased. Under
    the agent's billing lock and the request deadline, with no transaction open;
    a Stripe failure raises PaymentProviderError and the caller changes nothing.
    Idempotent (an ended subscription is skipped; the cancel call has a key per
    subscription). A customer or subscription Stripe no longer knows has nothing
    left to cancel: the agent is made Free and unlinked, with an audit row.
    Returns the ids it cancelled.
    """
    current = Agent.objects.filter(pk=agent.pk).first()
    if current is None or not current.stripe_customer_id:
        return []
    stripe_client.require_configured()
    with locks.agent_billing_lock(agent.pk), stripe_client.deadline():
        cancelled = _end_at_once(current.stripe_customer_id)
        if cancelled is None:
            with transaction.atomic(durable=True):
                records.customer_forget(
                    agent=current, customer_id=current.stripe_customer_id, action="deletion"
                )
            return []
    if cancelled:
        logger.info("agent %s: subscriptions %s cancelled at once", agent.pk, cancelled)
    return cancelled


def _end_at_once(customer_id: str) -> list[str] | None:
    """End every live subscription of the customer now; the ids ended, None when
    Stripe no longer knows the customer. Within the caller's deadline."""
    live = _live_unless_forgotten(customer_id)
    if live is None:
        return None
    cancelled = []
    for subscription in live:
        try:
            ended = stripe_calls.subscription_cancel_now(
                subscription_id=subscription["id"],
                idempotency_key=f"lithtrix-cancel-now-{subscription['id']}",
            )
        except PaymentProviderError as exc:
            if not stripe_missing(exc):
                raise
            continue
        mirror(subscription=ended)
        cancelled.append(subscription["id"])
    return cancelled


@retry_with_backoff
def deleted_agent_subscriptions_end_job(customer_id: str) -> list[str]:
    """End every live subscription of a deleted agent's customer now.

    Enqueued by a setup whose recording transaction finds the agent deleted while it
    called Stripe: the deletion ended the subscriptions it knew of, this job ends
    what the setup made. Idempotent; tried again with backoff while Stripe fails.
    """
    stripe_client.require_configured()
    with stripe_client.deadline():
        cancelled = _end_at_once(customer_id) or []
    if cancelled:
        logger.warning(
            "customer %s of a deleted agent: subscriptions %s cancelled at once",
            customer_id,
            cancelled,
        )
    return cancelled


def deleted_agent_subscriptions_end_enqueue(*, customer_id: str) -> None:
    """The job that ends a deleted agent's customer's live subscriptions, in the
    caller's transaction (the one that found the agent deleted)."""
    async_task(
        DELETED_AGENT_END_TASK,
        customer_id,
        task_name=f"deleted_agent_subscriptions_end:{customer_id}",
    )


def on_agent_deleted(
    sender: Any, agent: Agent, stripe_customer_id: str | None, **kwargs: Any
) -> None:
    """accounts.signals.agent_deleted, in the deletion's transaction: a customer linked
    then gets the job that ends its live subscriptions at once.

    The request's hook above ended those it knew of; a setup that linked a customer
    since (its answer lost, or recorded just before the deletion locked the row)
    would otherwise leave a deleted agent paying. Nothing live: the job ends nothing.
    """
    if stripe_customer_id:
        deleted_agent_subscriptions_end_enqueue(customer_id=stripe_customer_id)


def on_agent_deletion_requested(sender: Any, agent: Agent, **kwargs: Any) -> None:
    """accounts.signals.agent_deletion_requested: Stripe stops charging before the agent goes.

    Every live subscription is cancelled at once (not at period end); a Stripe
    failure raises PaymentProviderError (502), which aborts the deletion.
    """
    subscriptions_cancel_now(agent=agent)
