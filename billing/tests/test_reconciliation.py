"""The periodic reconciliation repairs tiers that disagree with Stripe (localstripe)."""

from __future__ import annotations

import pytest
import stripe
from django.conf import settings
from django.db import connection
from prometheus_client import REGISTRY

from accounts.models import Agent, AgentEvent, Tier
from billing.payments import reconciliation, stripe_calls
from billing.tests.conftest import TEST_SECRET_KEY
from billing.tests.helpers import run_jobs
from billing.tests.test_cancel import pro_with_subscription, stripe_subscriptions
from events.models import Event

__all__ = ["pro_with_subscription"]


def reconcile() -> list[object]:
    """The periodic job, then the per-agent jobs it enqueued: their results."""
    reconciliation.stripe_reconcile()
    return [result for func, result in run_jobs() if func == reconciliation.AGENT_TASK]


def drift(direction: str) -> float:
    value = REGISTRY.get_sample_value("lithtrix_billing_drift_total", {"direction": direction})
    return value or 0.0


def tier_changes(agent: Agent) -> list[AgentEvent]:
    return list(agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).order_by("created_at"))


def test_pro_whose_subscription_stripe_canceled_is_made_free(pro_with_subscription):
    agent = pro_with_subscription
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    # Canceled on Stripe; its webhook never arrived.
    stripe.Subscription.cancel(subscription["id"], api_key=TEST_SECRET_KEY)
    before = drift("to_free")

    results = reconcile()

    assert results == ["repaired"]
    agent.refresh_from_db()
    assert agent.tier == Tier.FREE
    repaired = tier_changes(agent)[-1]
    assert repaired.reason == (
        f"Reconciliation with Stripe: subscription {subscription['id']} is canceled."
    )
    assert repaired.data == {
        "tier": "free",
        "source": "reconciliation",
        "stripe_customer_id": agent.stripe_customer_id,
        "subscriptions": {subscription["id"]: "canceled"},
    }
    assert Event.objects.filter(agent=agent, type="billing.tier_changed").latest(
        "created_at"
    ).data == {"from": "pro", "to": "free", "reason": "reconciliation"}
    assert drift("to_free") == before + 1
    # The next run finds nothing to repair.
    assert reconcile() == []  # Free, no live subscription: not Stripe-dependent any more
    assert drift("to_free") == before + 1


def test_free_agent_whose_subscription_is_live_on_stripe_is_made_pro(pro_with_subscription):
    agent = pro_with_subscription
    # The database lost the upgrade (say, restored from a backup).
    Agent.objects.filter(pk=agent.pk).update(tier=Tier.FREE)
    before = drift("to_pro")

    results = reconcile()

    assert results == ["repaired"]
    agent.refresh_from_db()
    assert agent.tier == Tier.PRO
    repaired = tier_changes(agent)[-1]
    assert repaired.data["tier"] == "pro"
    assert repaired.data["source"] == "reconciliation"
    assert drift("to_pro") == before + 1


def test_agent_that_agrees_with_stripe_is_left_alone(pro_with_subscription):
    changes = len(tier_changes(pro_with_subscription))
    before = (drift("to_free"), drift("to_pro"))

    results = reconcile()

    assert results == ["in_step"]
    assert len(tier_changes(pro_with_subscription)) == changes
    assert (drift("to_free"), drift("to_pro")) == before


def test_pro_whose_customer_stripe_forgot_is_made_free_and_unlinked(pro_with_subscription):
    customer_id = pro_with_subscription.stripe_customer_id
    stripe.Customer.delete(customer_id, api_key=TEST_SECRET_KEY)

    assert reconcile() == ["repaired"]

    agent = Agent.objects.get(pk=pro_with_subscription.pk)
    assert (agent.tier, agent.stripe_customer_id) == (Tier.FREE, None)
    assert tier_changes(agent)[-1].reason == (
        f"Reconciliation with Stripe: Stripe no longer knows customer {customer_id}."
    )


def test_stripe_failing_leaves_the_agent_for_the_next_run(
    pro_with_subscription, settings, closed_port
):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0

    results = reconcile()

    assert results == ["stripe_failed"]
    assert Agent.objects.get(pk=pro_with_subscription.pk).tier == Tier.PRO


@pytest.mark.django_db(transaction=True)
def test_stripe_is_read_with_no_transaction_open(
    local_stripe_pro, api_client, registered, monkeypatch
):
    from billing.tests.test_setup import setup

    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    seen = []
    read = stripe_calls.subscriptions_of

    def watched(**kwargs):
        seen.append(connection.in_atomic_block)
        return read(**kwargs)

    monkeypatch.setattr(stripe_calls, "subscriptions_of", watched)
    [subscription] = stripe_subscriptions(
        Agent.objects.get(pk=registered.agent.pk).stripe_customer_id
    )
    stripe.Subscription.cancel(subscription["id"], api_key=TEST_SECRET_KEY)

    assert reconcile() == ["repaired"]

    assert seen == [False]
    assert Agent.objects.get(pk=registered.agent.pk).tier == Tier.FREE


def test_reconciliation_is_a_declared_periodic_job():
    assert settings.LITHTRIX_PERIODIC_JOBS["stripe_reconcile"] == {
        "func": "billing.payments.reconciliation.stripe_reconcile",
        "minutes": settings.LITHTRIX_RECONCILE_MINUTES,
    }
    assert settings.LITHTRIX_RECONCILE_MINUTES == 60
