"""The agent's upgrade to Pro: POST /v1/billing/setup.

Stripe is reached only through billing.payments.stripe_client; dj-stripe's tables mirror
what Stripe answered. Services never import DRF.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from accounts.models import Agent, AgentEvent, Tier
from billing.payments import locks, records, stripe_calls, stripe_client
from billing.payments.cancel import deleted_agent_subscriptions_end_enqueue
from billing.payments.mirror import (
    customer_known,
    mirror,
    stripe_id,
)
from events.jobs import retry_with_backoff
from lithtrix.core.exceptions import InvalidApiKeyError, PaymentFailedError, PaymentProviderError

logger = logging.getLogger("billing.payments.setup")

DELETED_MESSAGE = "This agent was deleted: its API keys no longer work."
UNSURE_MESSAGE = (
    "The payment provider did not answer in time. If it completed the upgrade, the agent "
    "becomes Pro within minutes; retrying this request is safe: it never creates a second "
    "subscription."
)
FOLLOW_UP_TASK = "billing.payments.setup.setup_follow_up_job"


def billing_setup(*, agent: Agent, payment_method_id: str) -> Agent:
    """Attach ``payment_method_id`` to the agent's Stripe Customer and make the agent Pro.

    Guarantees:
    - Stripe is called first, with no database transaction or row lock open, all
      within one deadline (STRIPE_REQUEST_DEADLINE_SECONDS, retries included).
      Then one short durable transaction records the customer link, the tier and
      the audit rows. A decline (PaymentFailedError), a provider failure or the
      deadline (PaymentProviderError) leaves the agent exactly as it was; dj-stripe's
      mirror rows may already show what Stripe holds (they mirror Stripe, not us).
      A provider failure once the customer exists also enqueues, in its own
      transaction, a job that applies what Stripe holds (a subscription whose
      answer was lost makes the agent Pro), and the 502 says so.
    - Concurrent billing requests of one agent run one after the other (the
      agent's billing lock, never its row): 409 BILLING_IN_PROGRESS after a few
      seconds of waiting. Metering is never blocked.
    - One Stripe Customer per agent: reused once linked; created with an idempotency
      key derived from the agent id, so a retried request gets the same customer.
    - One Pro subscription per agent (when STRIPE_PRO_PRICE_ID is set): Stripe's list
      of the customer's subscriptions is checked first, so calling setup again,
      also after a lost response, never creates a second; a pending cancellation
      is withdrawn (the subscription resumes).
    - Called again as Pro, it makes the new payment method the invoice default.
    - A deleted agent is never made Pro: refused (401) before Stripe is called; and
      when the deletion commits while Stripe is called, the recording transaction
      finds it and enqueues a job that ends the subscriptions this setup made.
    """
    stripe_client.require_configured()
    with locks.agent_billing_lock(agent.pk):
        known: dict[str, str] = {}
        try:
            current, facts, subscription, resumed = _setup_on_stripe(
                agent=agent, payment_method_id=payment_method_id, known=known
            )
        except PaymentProviderError as exc:
            if "customer_id" not in known or stripe_client.answered(exc):
                raise
            # Stripe may have acted on a call whose answer never came (a lost
            # subscription answer): a job looks at what Stripe holds and applies it.
            with transaction.atomic(durable=True):
                async_task(
                    FOLLOW_UP_TASK,
                    str(agent.pk),
                    known["customer_id"],
                    known.get("replaced_customer_id"),
                    task_name=f"setup_follow_up:{agent.pk}",
                )
            raise PaymentProviderError(UNSURE_MESSAGE) from exc
        recorded = _setup_record(
            agent=current, facts=facts, subscription=subscription, resumed=resumed
        )
    if not recorded:
        raise InvalidApiKeyError(DELETED_MESSAGE)
    customer_id = facts["stripe_customer_id"]
    agent.tier = Tier.PRO
    agent.stripe_customer_id = customer_id
    logger.info("agent %s upgraded to pro (customer %s)", agent.pk, customer_id)
    return agent


def _setup_on_stripe(
    *, agent: Agent, payment_method_id: str, known: dict[str, str]
) -> tuple[Any, ...]:
    """Setup's Stripe calls and the mirror, within the request deadline; no transaction.
    ``known`` gets the customer id as soon as there is one."""
    with stripe_client.deadline():
        current = Agent.objects.get(pk=agent.pk)
        if current.deleted_at is not None:
            # Deleted while this request waited for the agent's billing lease.
            raise InvalidApiKeyError(DELETED_MESSAGE)
        agent_id = str(current.pk)
        customer_id = current.stripe_customer_id
        replaced = None
        if customer_id and not customer_known(customer_id):
            # Deleted in Stripe's dashboard, or a local Stripe restarted empty.
            replaced, customer_id = customer_id, None
            known["replaced_customer_id"] = replaced
        if not customer_id:
            # A new key after a lost customer: the old one would answer the lost one.
            suffix = f"-after-{replaced}" if replaced else ""
            customer_id = stripe_calls.customer_create(
                agent_id=agent_id,
                agent_name=current.agent_name,
                idempotency_key=f"lithtrix-customer-{agent_id}{suffix}",
            ).id
        known["customer_id"] = customer_id
        payment_method = stripe_calls.payment_method_attach(
            payment_method_id=payment_method_id,
            customer_id=customer_id,
            idempotency_key=f"lithtrix-attach-{customer_id}-{payment_method_id}",
        )
        customer = stripe_calls.customer_set_default_payment_method(
            customer_id=customer_id, payment_method_id=payment_method.id
        )
        subscription, resumed = _pro_subscription_ensure(
            agent_id=agent_id, customer_id=customer_id, payment_method_id=payment_method.id
        )
        # dj-stripe may fetch related objects while mirroring: Stripe errors there are ours too.
        mirror(customer=customer, payment_method=payment_method, subscription=subscription)
    facts = {
        "stripe_customer_id": customer_id,
        "payment_method_id": payment_method.id,
        "subscription_id": subscription.id if subscription is not None else None,
    }
    if replaced:
        facts["replaced_customer_id"] = replaced
    return current, facts, subscription, resumed


def _setup_record(*, agent: Agent, facts: dict, subscription: Any, resumed: bool) -> bool:
    """Setup's one short transaction: customer link, audit rows, tier. False (and only
    the job that ends what Stripe now holds is recorded) when the agent was deleted
    meanwhile: the deletion, which takes no billing lease for an agent without a
    customer, may commit while Stripe is called."""
    current = agent
    customer_id = facts["stripe_customer_id"]
    with transaction.atomic(durable=True):
        live = (
            Agent.objects.select_for_update(no_key=True)
            .filter(pk=current.pk, deleted_at__isnull=True)
            .values_list("pk", flat=True)
            .first()
        )
        if live is None:
            deleted_agent_subscriptions_end_enqueue(customer_id=customer_id)
            logger.warning(
                "agent %s was deleted during its billing setup: customer %s's "
                "subscriptions are ended by a job",
                current.pk,
                customer_id,
            )
            return False
        Agent.objects.filter(pk=current.pk).exclude(stripe_customer_id=customer_id).update(
            stripe_customer_id=customer_id, updated_at=timezone.now()
        )
        AgentEvent.objects.create(
            agent=current,
            kind=AgentEvent.Kind.PAYMENT_METHOD_SET,
            reason="Payment method attached through POST /v1/billing/setup.",
            data=facts,
        )
        if resumed:
            AgentEvent.objects.create(
                agent=current,
                kind=AgentEvent.Kind.SUBSCRIPTION_RESUMED,
                reason=f"Pending cancellation of {subscription.id} withdrawn by billing setup.",
                data=facts,
            )
        records.tier_change(
            agent=current,
            tier=Tier.PRO,
            reason="Upgraded through billing setup.",
            event_reason="setup",
            data=facts,
        )
    return True


def _pro_subscription_ensure(
    *, agent_id: str, customer_id: str, payment_method_id: str
) -> tuple[Any, bool]:
    """(The live Pro subscription of the customer, else a new one; None without a price,
    whether a pending cancellation was withdrawn).

    A subscription behind on payment (past_due, unpaid) has its open invoice paid
    with the new payment method: Stripe does not retry an unpaid one by itself.
    """
    price_id = settings.STRIPE_PRO_PRICE_ID
    if not price_id:
        return None, False
    existing = stripe_calls.subscriptions_of(customer_id=customer_id)
    for subscription in existing:
        if subscription["status"] in stripe_client.ENDED_STATUSES:
            continue
        resumed = False
        # stripe-python 15's objects are not dicts: no .get (absent fields: `in`).
        pending = [
            subscription[name]
            for name in ("cancel_at_period_end", "cancel_at")
            if name in subscription
        ]
        if any(pending):
            subscription = stripe_calls.subscription_cancel_at_period_end(
                subscription_id=subscription["id"], cancel=False
            )
            resumed = True
        if subscription["status"] in stripe_client.ENTITLED_STATUSES - {"past_due"}:
            return subscription, resumed
        return _subscription_settle(subscription, payment_method_id=payment_method_id), resumed
    # The key changes only when a subscription ends, so a retry of this very
    # request reuses the subscription it created, and a re-subscription after a
    # cancellation is not answered with the cancelled one.
    created = stripe_calls.subscription_create(
        customer_id=customer_id,
        price_id=price_id,
        agent_id=agent_id,
        idempotency_key=f"lithtrix-pro-{customer_id}-{len(existing)}",
    )
    return created, False


def _subscription_settle(subscription: Any, *, payment_method_id: str) -> Any:
    """Pay the latest open invoice of a subscription behind on payment; its state after."""
    invoice_id = stripe_id(subscription["latest_invoice"])
    if invoice_id:
        invoice = stripe_calls.invoice_retrieve(invoice_id=invoice_id)
        if invoice["status"] == "open":
            stripe_calls.invoice_pay(invoice_id=invoice_id, payment_method_id=payment_method_id)
    subscription = stripe_calls.subscription_retrieve(subscription_id=subscription["id"])
    if subscription["status"] not in stripe_client.ENTITLED_STATUSES:
        raise PaymentFailedError(
            "The Pro subscription could not be brought up to date with this payment method."
        )
    return subscription


@retry_with_backoff
def setup_follow_up_job(agent_id: str, customer_id: str, replaced: str | None = None) -> str:
    """After a setup that failed once Stripe knew the customer: apply what Stripe holds.

    A subscription call whose answer was lost may still have created the
    subscription: Stripe then charges for Pro while the agent was told to retry.
    A live subscription of the customer makes the agent Pro (linked to the
    customer, with its audit row and event), or, for an agent deleted since, is
    ended by a job. Nothing live: nothing to do. Idempotent; a Stripe failure is
    tried again with backoff.
    """
    with stripe_client.deadline():
        live = [
            s
            for s in stripe_calls.subscriptions_of(customer_id=customer_id)
            if s["status"] in stripe_client.ENTITLED_STATUSES
        ]
        for subscription in live:
            mirror(subscription=subscription)
    if not live:
        return "nothing live"
    facts = {"stripe_customer_id": customer_id, "subscription_id": live[0]["id"]}
    with transaction.atomic(durable=True):
        agent = Agent.objects.select_for_update(no_key=True).filter(pk=agent_id).first()
        if agent is None or agent.deleted_at is not None:
            deleted_agent_subscriptions_end_enqueue(customer_id=customer_id)
            return "agent deleted"
        # The setup may have replaced a customer Stripe no longer knew (``replaced``).
        if agent.stripe_customer_id not in (None, customer_id, replaced):
            logger.warning(
                "setup follow-up: agent %s is linked to %s, not %s; left to reconciliation",
                agent_id,
                agent.stripe_customer_id,
                customer_id,
            )
            return "other customer"
        Agent.objects.filter(pk=agent.pk).exclude(stripe_customer_id=customer_id).update(
            stripe_customer_id=customer_id, updated_at=timezone.now()
        )
        changed = records.tier_change(
            agent=agent,
            tier=Tier.PRO,
            reason=f"Stripe subscription {live[0]['id']} is live (a setup's answer was lost).",
            event_reason="setup",
            data=facts,
        )
    if changed:
        logger.warning("agent %s: Pro from a setup whose answer was lost", agent_id)
    return "applied" if changed else "in step"
