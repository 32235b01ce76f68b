"""A customer or subscription Stripe no longer knows is "no subscription", never a 502.

Against localstripe: the tests delete the agent's customer (or empty localstripe, as
a restart of `make run` does) behind the project's back.
"""

from __future__ import annotations

import urllib.request

import pytest
import stripe

from accounts.models import Agent, AgentEvent, Tier
from billing.payments import provisioning
from billing.tests.conftest import LOCAL_PRO_PLAN, TEST_SECRET_KEY
from billing.tests.test_cancel import (
    FREE_ANSWER,
    cancel,
    pro_with_subscription,
    stripe_subscriptions,
)
from billing.tests.test_setup import setup
from billing.tests.test_webhooks import endpoint, pro_agent

__all__ = ["endpoint", "pro_agent", "pro_with_subscription"]


def forget_everything(localstripe_url: str) -> None:
    """localstripe restarted empty (the database keeps its old ids)."""
    reset = urllib.request.Request(f"{localstripe_url}/_config/data", method="DELETE")  # noqa: S310
    urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - loopback http


def delete_customer(customer_id: str) -> None:
    """The customer deleted in Stripe's dashboard."""
    stripe.Customer.delete(customer_id, api_key=TEST_SECRET_KEY)


@pytest.fixture(params=["customer-deleted", "stripe-emptied"])
def stripe_forgets(request, local_stripe_pro):
    def forget(customer_id: str) -> None:
        if request.param == "customer-deleted":
            delete_customer(customer_id)
        else:
            forget_everything(local_stripe_pro)
            # What `make run` sets up again on an empty localstripe.
            provisioning.local_pro_plan_ensure(plan_id=LOCAL_PRO_PLAN)

    return forget


def test_cancel_of_a_customer_stripe_forgot_makes_the_agent_free(
    pro_with_subscription, stripe_forgets, api_client, registered
):
    customer_id = pro_with_subscription.stripe_customer_id
    stripe_forgets(customer_id)

    response = cancel(api_client, registered)

    assert response.status_code == 200, response.content
    assert response.json() == FREE_ANSWER
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert (agent.tier, agent.stripe_customer_id) == (Tier.FREE, None)
    change = agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).latest("created_at")
    assert change.data == {"tier": "free", "stripe_customer_id": customer_id}
    assert f"Stripe no longer knows customer {customer_id}" in change.reason
    # Asked again, nothing more happens.
    assert cancel(api_client, registered).json() == FREE_ANSWER


def test_deletion_of_an_agent_whose_customer_stripe_forgot_succeeds(
    pro_with_subscription, stripe_forgets, api_client, registered
):
    customer_id = pro_with_subscription.stripe_customer_id
    stripe_forgets(customer_id)

    response = api_client.delete(
        "/v1/me", {"confirm": registered.agent.agent_name}, format="json", **registered.auth
    )

    assert response.status_code == 204, response.content
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.deleted_at is not None
    assert agent.tier == Tier.FREE
    change = agent.events.get(kind=AgentEvent.Kind.TIER_CHANGED, data__tier="free")
    assert f"Stripe no longer knows customer {customer_id}" in change.reason


def test_setup_after_stripe_forgot_the_customer_makes_a_new_one(
    pro_with_subscription, stripe_forgets, local_stripe_pro, api_client, registered
):
    old_customer = pro_with_subscription.stripe_customer_id
    stripe_forgets(old_customer)

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200, response.content
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.PRO
    assert agent.stripe_customer_id not in (None, old_customer)
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["status"] == "active"
    attached = agent.events.filter(kind=AgentEvent.Kind.PAYMENT_METHOD_SET).latest("created_at")
    assert attached.data["stripe_customer_id"] == agent.stripe_customer_id
    assert attached.data["replaced_customer_id"] == old_customer


# A subscription Stripe lists but then answers 404 for (gone in between): recorded Stripe
# JSON, whose unknown routes answer 404 resource_missing.


def test_cancel_of_a_subscription_stripe_no_longer_has_makes_the_agent_free(
    pro_agent, api_client, registered
):
    response = cancel(api_client, registered)

    assert response.status_code == 200, response.content
    assert response.json() == FREE_ANSWER
    assert Agent.objects.get(pk=pro_agent.pk).tier == Tier.FREE


def test_deletion_when_stripe_no_longer_has_the_subscription_succeeds(
    pro_agent, api_client, registered
):
    response = api_client.delete(
        "/v1/me", {"confirm": registered.agent.agent_name}, format="json", **registered.auth
    )

    assert response.status_code == 204, response.content
    assert Agent.objects.get(pk=pro_agent.pk).deleted_at is not None
