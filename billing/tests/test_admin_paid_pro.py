"""The console's "Remove Pro" and a Pro that a live Stripe subscription pays for."""

from __future__ import annotations

import stripe

from accounts.models import Agent, AgentEvent, Tier
from accounts.tests.test_admin_actions import bulk
from billing.tests.conftest import TEST_SECRET_KEY
from billing.tests.test_setup import setup

AGENTS_URL = "/admin/accounts/agent/"


def _paying_pro(api_client, registered) -> Agent:
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    return Agent.objects.get(pk=registered.agent.pk)


def _subscriptions(agent: Agent) -> list:
    assert agent.stripe_customer_id is not None
    return list(
        stripe.Subscription.list(customer=agent.stripe_customer_id, api_key=TEST_SECRET_KEY)
    )


def _tier_changes(agent: Agent) -> int:
    return AgentEvent.objects.filter(agent=agent, kind=AgentEvent.Kind.TIER_CHANGED).count()


def test_remove_pro_is_refused_while_a_subscription_pays_for_it(
    local_stripe_pro, api_client, admin_client, registered
):
    agent = _paying_pro(api_client, registered)
    changes = _tier_changes(agent)
    url = f"{AGENTS_URL}{agent.pk}/set-tier/"

    page = admin_client.get(url, {"tier": "free"}, follow=True)
    posted = admin_client.post(url, {"tier": "free", "reason": "asked by mail"}, follow=True)

    [subscription] = _subscriptions(agent)
    for response in (page, posted):
        assert response.status_code == 200
        text = response.content.decode()
        assert f"Pro is paid by Stripe subscription {subscription['id']}" in text
        assert "POST /v1/billing/cancel" in text
    agent.refresh_from_db()
    assert agent.tier == Tier.PRO
    assert _tier_changes(agent) == changes
    assert subscription["status"] == "active"
    # Granting Pro (or removing a Pro nobody pays for) is unchanged: test_admin_actions.


def test_bulk_remove_pro_skips_the_agents_a_subscription_pays_for(
    local_stripe_pro, api_client, admin_client, registered, make_agent
):
    paying = _paying_pro(api_client, registered)
    granted = make_agent(name="granted-by-hand").agent
    Agent.objects.filter(pk=granted.pk).update(tier=Tier.PRO)

    done = bulk(admin_client, "remove_pro", [paying, granted], confirm="yes", reason="cleanup")

    text = done.content.decode()
    assert "Tier set to Free by hand: 1 agent(s)." in text
    # The admin's messages start with a capital.
    assert "My-agent: Not changed: Pro is paid by Stripe subscription sub_" in text
    assert Agent.objects.get(pk=paying.pk).tier == Tier.PRO
    assert Agent.objects.get(pk=granted.pk).tier == Tier.FREE


def test_remove_pro_goes_ahead_once_the_subscription_ended(
    local_stripe_pro, api_client, admin_client, registered
):
    agent = _paying_pro(api_client, registered)
    [subscription] = _subscriptions(agent)
    # Ended in Stripe and mirrored, while the tier here still says Pro.
    from billing.payments.mirror import mirror

    mirror(subscription=stripe.Subscription.delete(subscription["id"], api_key=TEST_SECRET_KEY))

    response = admin_client.post(
        f"{AGENTS_URL}{agent.pk}/set-tier/", {"tier": "free", "reason": "ended"}
    )

    assert response.status_code == 302
    assert Agent.objects.get(pk=agent.pk).tier == Tier.FREE
