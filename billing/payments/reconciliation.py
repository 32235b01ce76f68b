"""The periodic reconciliation: every agent whose tier depends on Stripe, re-read from it.

Webhooks can be lost for good (an endpoint misconfigured for days, a job given up,
an event never sent): the tier then disagrees with Stripe. Every
LITHTRIX_RECONCILE_MINUTES, each agent that is Pro or whose customer has a
subscription that has not ended is re-read from Stripe (and mirrored through
dj-stripe's sync); a wrong tier is repaired with its audit row and event (reason
"reconciliation") and counted in lithtrix_billing_drift_total.

Stripe is read with no transaction or row lock open; then one short transaction per
agent, which changes nothing when the agent changed in between (a webhook or a
billing request acted on something newer; the next run looks again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django_q.tasks import async_task

from accounts.models import Agent, Tier
from billing.payments import records, stripe_calls, stripe_client
from billing.payments.mirror import customer_known, mirror, stripe_missing
from lithtrix.core import metrics
from lithtrix.core.exceptions import PaymentProviderError

logger = logging.getLogger("billing.payments.reconciliation")

AGENT_TASK = "billing.payments.reconciliation.agent_reconcile_job"


@dataclass(frozen=True)
class StripeVerdict:
    """What Stripe says an agent's tier should be; None: Stripe does not decide it."""

    tier: str | None
    why: str
    facts: dict


def stripe_dependent_agents() -> list[Any]:
    """Ids of live agents that are Pro, or whose customer has a mirrored subscription
    that has not ended (a cancellation pending, or a Pro that the database lost)."""
    with_live_subscription = Q(
        stripe_customer_id__in=_customers_with_unended_subscriptions(),
    )
    return list(
        Agent.objects.filter(deleted_at__isnull=True, stripe_customer_id__isnull=False)
        .filter(Q(tier=Tier.PRO) | with_live_subscription)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _customers_with_unended_subscriptions() -> Any:
    from djstripe import models as djstripe_models

    return (
        # dj-stripe 2.11 keeps a subscription's status in its stripe_data only.
        djstripe_models.Subscription.objects.exclude(
            stripe_data__status__in=list(stripe_client.ENDED_STATUSES)
        )
        .values("customer_id")
        .distinct()
    )


def stripe_reconcile() -> int:
    """The periodic job: one reconcile job per Stripe-dependent agent; returns how many.

    Each agent is its own short job (one Stripe deadline), spread over the workers,
    so the run never outlasts a job's timeout however many agents there are.
    """
    if not stripe_client.is_configured():
        return 0
    agent_ids = stripe_dependent_agents()
    with transaction.atomic():
        for agent_id in agent_ids:
            async_task(AGENT_TASK, str(agent_id), task_name=f"stripe_reconcile:{agent_id}")
    logger.info("reconciliation: %d agents to re-read from Stripe", len(agent_ids))
    return len(agent_ids)


def agent_reconcile_job(agent_id: str) -> str:
    """One agent's reconciliation; a Stripe failure waits for the next run."""
    try:
        return "repaired" if agent_reconcile(agent_id=agent_id) else "in_step"
    except PaymentProviderError:
        logger.warning("reconciliation: agent %s not checked, Stripe failed", agent_id)
        return "stripe_failed"


def agent_reconcile(*, agent_id: Any) -> bool:
    """Repair one agent's tier from Stripe's current state; True when it changed."""
    before = (
        Agent.objects.filter(pk=agent_id).values("tier", "updated_at", "stripe_customer_id").first()
    )
    if before is None or not before["stripe_customer_id"]:
        return False
    customer = before["stripe_customer_id"]
    with stripe_client.deadline():
        verdict = _stripe_verdict(customer)
    if verdict.tier is None or verdict.tier == before["tier"]:
        return False
    with transaction.atomic(durable=True):
        agent = Agent.objects.select_for_update().filter(pk=agent_id).first()
        if agent is None or agent.updated_at != before["updated_at"]:
            return False  # changed while Stripe was read: the next run looks again
        if verdict.facts.get("customer_missing"):
            # Setup makes a new customer for an unlinked agent.
            Agent.objects.filter(pk=agent_id).update(stripe_customer_id=None)
        changed = records.tier_change(
            agent=agent,
            tier=verdict.tier,
            reason=f"Reconciliation with Stripe: {verdict.why}",
            event_reason="reconciliation",
            data={"source": "reconciliation", "stripe_customer_id": customer, **verdict.facts},
        )
    if changed:
        metrics.observe_billing_drift("to_pro" if verdict.tier == Tier.PRO else "to_free")
        logger.warning(
            "reconciliation: agent %s was %s, Stripe says %s (%s)",
            agent_id,
            before["tier"],
            verdict.tier,
            verdict.why,
        )
    return changed


def _stripe_verdict(customer_id: str) -> StripeVerdict:
    """Stripe's answer for a customer, its subscriptions mirrored through dj-stripe."""
    try:
        subscriptions = stripe_calls.subscriptions_of(customer_id=customer_id)
    except PaymentProviderError as exc:
        if not stripe_missing(exc):
            raise
        subscriptions = None
    if subscriptions is None or (not subscriptions and not customer_known(customer_id)):
        return StripeVerdict(
            Tier.FREE,
            f"Stripe no longer knows customer {customer_id}.",
            {"customer_missing": True},
        )
    for subscription in subscriptions:
        mirror(subscription=subscription)
    statuses = {s["id"]: s["status"] for s in subscriptions}
    facts = {"subscriptions": statuses}
    entitled = sorted(i for i, st in statuses.items() if st in stripe_client.ENTITLED_STATUSES)
    if entitled:
        return StripeVerdict(Tier.PRO, f"subscription {entitled[0]} is live.", facts)
    ended = sorted(i for i, st in statuses.items() if st in stripe_client.DOWNGRADE_STATUSES)
    if ended:
        return StripeVerdict(
            Tier.FREE, f"subscription {ended[-1]} is {statuses[ended[-1]]}.", facts
        )
    # No subscription at all: card-on-file Pro, which Stripe does not decide.
    return StripeVerdict(None, "no subscription", facts)
