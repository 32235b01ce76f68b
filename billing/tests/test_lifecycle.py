"""The whole Pro lifecycle against a real localstripe, its webhooks delivered over HTTP.

setup -> subscription -> cancel (at period end) -> Stripe deletes the subscription
-> localstripe sends customer.subscription.deleted -> the agent is Free.
And the account-deletion hook: subscriptions cancelled at once.
"""

from __future__ import annotations

import time

import pytest
import requests
import stripe
from django.core.management import call_command
from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from accounts.signals import agent_deletion_requested
from billing.models import StripeEventReceipt
from billing.tests.conftest import TEST_SECRET_KEY
from billing.tests.helpers import run_jobs
from billing.tests.test_cancel import stripe_subscriptions
from billing.tests.test_setup import setup
from lithtrix.core.exceptions import PaymentProviderError
from testing.assertions import wait_for


@pytest.mark.django_db(transaction=True)
def test_setup_subscribe_cancel_deletion_webhook_free_end_to_end(
    local_stripe_pro, settings, live_server, registered
):
    # What `make run` does: localstripe sends its events to this server, signed.
    call_command("billing_localstripe_setup", webhook_url=f"{live_server.url}/v1/billing/webhook")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {registered.api_key}"

    upgraded = api.post(
        f"{live_server.url}/v1/billing/setup", json={"payment_method_id": "pm_card_visa"}
    )
    assert upgraded.status_code == 200, upgraded.text
    agent = Agent.objects.get(pk=registered.agent.pk)
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert (subscription["status"], subscription["plan"]["id"]) == (
        "active",
        settings.STRIPE_PRO_PRICE_ID,
    )
    assert djstripe_models.Subscription.objects.get(id=subscription["id"]).status == "active"

    cancelled = api.post(f"{live_server.url}/v1/billing/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["tier"] == "pro"
    cancel_at = cancelled.json()["cancel_at"]
    assert cancel_at is not None
    billing = api.get(f"{live_server.url}/v1/billing").json()
    assert (billing["tier"], billing["cancel_at"]) == ("pro", cancel_at)

    # The paid period ends: Stripe deletes the subscription and sends the event.
    stripe.Subscription.cancel(subscription["id"], api_key=TEST_SECRET_KEY)

    # This subscription's event: localstripe may still deliver an earlier test's.
    assert wait_for(
        lambda: StripeEventReceipt.objects.filter(
            type="customer.subscription.deleted", body__data__object__id=subscription["id"]
        ).exists()
    ), "customer.subscription.deleted did not reach the server"
    run_jobs()  # what a worker does
    assert Agent.objects.get(pk=agent.pk).tier == Tier.FREE
    billing = api.get(f"{live_server.url}/v1/billing").json()
    assert (billing["tier"], billing["call_limit"], billing["cancel_at"]) == ("free", 300, None)
    ended = agent.events.get(kind=AgentEvent.Kind.SUBSCRIPTION_ENDED)
    assert ended.data["subscription_id"] == subscription["id"]
    assert ended.data["status"] == "canceled"
    mirrored = djstripe_models.Event.objects.filter(type="customer.subscription.deleted")
    assert [e.data["object"]["id"] for e in mirrored].count(subscription["id"]) == 1
    # Upgrading again makes a new subscription.
    again = api.post(
        f"{live_server.url}/v1/billing/setup", json={"payment_method_id": "pm_card_visa"}
    )
    assert again.status_code == 200
    statuses = sorted(s["status"] for s in stripe_subscriptions(agent.stripe_customer_id))
    assert statuses == ["active", "canceled"]


def test_agent_deletion_cancels_the_subscription_at_once(local_stripe_pro, api_client, registered):
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    agent = Agent.objects.get(pk=registered.agent.pk)

    agent_deletion_requested.send(sender=Agent, agent=agent)

    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["status"] == "canceled"
    assert djstripe_models.Subscription.objects.get(id=subscription["id"]).status == "canceled"
    # Sent again (a retried deletion): nothing left to cancel, no error.
    agent_deletion_requested.send(sender=Agent, agent=agent)


def test_agent_deletion_without_stripe_customer_calls_no_stripe(settings, db, registered):
    settings.STRIPE_SECRET_KEY = ""  # any Stripe call would fail

    agent_deletion_requested.send(sender=Agent, agent=registered.agent)


def test_agent_deletion_when_stripe_hangs_raises_502_within_the_deadline(
    local_stripe_pro, settings, api_client, registered, black_hole
):
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    agent = Agent.objects.get(pk=registered.agent.pk)
    settings.STRIPE_API_BASE = black_hole
    settings.STRIPE_REQUEST_DEADLINE_SECONDS = 1.0
    started = time.monotonic()

    with pytest.raises(PaymentProviderError) as raised:
        agent_deletion_requested.send(sender=Agent, agent=agent)

    assert raised.value.status_code == 502
    assert time.monotonic() - started < 2.0
    settings.STRIPE_API_BASE = local_stripe_pro
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["status"] == "active"


def test_a_setup_whose_agent_is_deleted_meanwhile_makes_no_pro_and_ends_its_subscription(
    local_stripe_pro, api_client, registered, monkeypatch
):
    from accounts.services import agent_delete
    from billing.payments import setup as setup_module
    from billing.payments.cancel import DELETED_AGENT_END_TASK
    from billing.tests.helpers import queued_jobs
    from billing.tests.test_setup import stripe_customers

    real = setup_module._setup_on_stripe
    made = {}

    def delete_while_stripe_is_called(**kwargs):
        # The agent has no customer yet: its deletion takes no billing lease and
        # commits while this setup's Stripe calls run.
        made["result"] = real(**kwargs)
        assert agent_delete(agent=Agent.objects.get(pk=registered.agent.pk))
        return made["result"]

    monkeypatch.setattr(setup_module, "_setup_on_stripe", delete_while_stripe_is_called)

    response = setup(api_client, registered, "pm_card_visa")

    body = response.json()
    assert (response.status_code, body["error_code"]) == (401, "INVALID_API_KEY")
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.deleted_at is not None
    assert (agent.tier, agent.stripe_customer_id) == (Tier.FREE, None)
    assert not agent.events.filter(
        kind__in=[AgentEvent.Kind.TIER_CHANGED, AgentEvent.Kind.PAYMENT_METHOD_SET]
    ).exists()
    customer_id = made["result"][1]["stripe_customer_id"]
    [subscription] = stripe_subscriptions(customer_id)
    assert subscription["status"] == "active"  # until the job runs
    assert queued_jobs(DELETED_AGENT_END_TASK) == 1

    ran = run_jobs()

    assert (DELETED_AGENT_END_TASK, [subscription["id"]]) in ran
    [subscription] = stripe_subscriptions(customer_id)
    assert subscription["status"] == "canceled"
    # Run again (at-least-once delivery): nothing left to end.
    from billing.payments.cancel import deleted_agent_subscriptions_end_job

    assert deleted_agent_subscriptions_end_job(customer_id) == []
    assert [c["id"] for c in stripe_customers()] == [customer_id]


def test_a_setup_that_waited_for_a_deletion_calls_no_stripe(local_stripe_pro, registered):
    from accounts.services import agent_delete
    from billing.payments.setup import billing_setup
    from billing.tests.test_setup import stripe_customers
    from lithtrix.core.exceptions import InvalidApiKeyError

    # Authenticated before the deletion, it reaches the lease after it.
    stale = Agent.objects.get(pk=registered.agent.pk)
    assert agent_delete(agent=Agent.objects.get(pk=registered.agent.pk))

    with pytest.raises(InvalidApiKeyError):
        billing_setup(agent=stale, payment_method_id="pm_card_visa")

    assert stripe_customers() == []
    assert Agent.objects.get(pk=registered.agent.pk).tier == Tier.FREE


def test_a_setup_whose_subscription_answer_was_lost_is_applied_by_a_job(
    local_stripe_pro, api_client, registered, monkeypatch
):
    from billing.payments import stripe_calls
    from billing.payments.setup import FOLLOW_UP_TASK
    from billing.tests.helpers import queued_jobs

    real = stripe_calls.subscription_create

    def created_then_lost(**kwargs):
        real(**kwargs)  # Stripe creates it; its answer never arrives
        raise PaymentProviderError() from stripe.APIConnectionError("read timed out")

    monkeypatch.setattr(stripe_calls, "subscription_create", created_then_lost)

    response = setup(api_client, registered, "pm_card_visa")

    body = response.json()
    assert (response.status_code, body["error_code"]) == (502, "PAYMENT_PROVIDER_ERROR")
    assert "Nothing was changed" not in body["message"]
    assert "becomes Pro within minutes" in body["message"]
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert (agent.tier, agent.stripe_customer_id) == (Tier.FREE, None)
    assert queued_jobs(FOLLOW_UP_TASK) == 1

    ran = [result for func, result in run_jobs() if func == FOLLOW_UP_TASK]

    assert ran == ["applied"]
    agent.refresh_from_db()
    assert agent.tier == Tier.PRO
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["status"] == "active"
    assert subscription["metadata"]["agent_id"] == str(agent.pk)
    assert djstripe_models.Subscription.objects.get(id=subscription["id"]).status == "active"
    change = agent.events.get(kind=AgentEvent.Kind.TIER_CHANGED)
    assert change.data["subscription_id"] == subscription["id"]
    # The client's retry, as the answer invited: same subscription, nothing twice.
    monkeypatch.undo()
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    assert [s["id"] for s in stripe_subscriptions(agent.stripe_customer_id)] == [subscription["id"]]
    assert agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).count() == 1


def test_a_refusal_stripe_answered_enqueues_nothing_and_says_nothing_changed(
    local_stripe_pro, api_client, registered, monkeypatch
):
    from billing.payments import stripe_calls
    from billing.payments.setup import FOLLOW_UP_TASK
    from billing.tests.helpers import queued_jobs

    def refused(**kwargs):
        # A 4xx: Stripe did nothing (say, a card attached to another customer).
        error = stripe.InvalidRequestError("already attached", "payment_method", http_status=400)
        raise PaymentProviderError() from error

    monkeypatch.setattr(stripe_calls, "payment_method_attach", refused)

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 502
    assert response.json()["message"] == PaymentProviderError.default_message
    assert queued_jobs(FOLLOW_UP_TASK) == 0


def test_a_setup_that_failed_before_stripe_knew_a_customer_enqueues_nothing(
    local_stripe_pro, api_client, registered, monkeypatch
):
    from billing.payments import stripe_calls
    from billing.payments.setup import FOLLOW_UP_TASK
    from billing.tests.helpers import queued_jobs

    def unreachable(**kwargs):
        raise PaymentProviderError()

    monkeypatch.setattr(stripe_calls, "customer_create", unreachable)

    response = setup(api_client, registered, "pm_card_visa")

    assert response.json()["message"] == PaymentProviderError.default_message
    assert queued_jobs(FOLLOW_UP_TASK) == 0


def test_a_setup_recorded_just_before_the_deletion_locks_the_row_is_ended_by_a_job(
    local_stripe_pro, registered
):
    from accounts.services import agent_delete
    from billing.payments.cancel import DELETED_AGENT_END_TASK
    from billing.payments.setup import billing_setup
    from billing.tests.helpers import queued_jobs

    def setup_between(sender, agent, **kwargs):
        # Billing's hook has just found no customer; a setup then links one and
        # records Pro before the deletion's transaction locks the row.
        billing_setup(agent=Agent.objects.get(pk=agent.pk), payment_method_id="pm_card_visa")

    agent_deletion_requested.connect(setup_between, dispatch_uid="test:setup_between")
    try:
        assert agent_delete(agent=Agent.objects.get(pk=registered.agent.pk))
    finally:
        agent_deletion_requested.disconnect(dispatch_uid="test:setup_between")

    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.deleted_at is not None and agent.stripe_customer_id is not None
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["status"] == "active"  # until the job runs
    assert queued_jobs(DELETED_AGENT_END_TASK) == 1

    ran = run_jobs()

    assert (DELETED_AGENT_END_TASK, [subscription["id"]]) in ran
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["status"] == "canceled"


def test_a_deletion_whose_hook_ended_everything_finds_nothing_more_to_end(
    local_stripe_pro, api_client, registered
):
    from accounts.services import agent_delete
    from billing.payments.cancel import DELETED_AGENT_END_TASK

    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    assert agent_delete(agent=Agent.objects.get(pk=registered.agent.pk))

    assert (DELETED_AGENT_END_TASK, []) in run_jobs()
