"""POST /v1/billing/cancel and cancel_at, against localstripe with a Pro plan."""

from __future__ import annotations

import datetime
import uuid

import pytest
import stripe
from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from billing.payments.locks import agent_billing_lock
from billing.tests.conftest import TEST_SECRET_KEY
from billing.tests.test_setup import setup
from testing.assertions import NOT_A_JSON_OBJECT, assert_envelope

CANCEL_URL = "/v1/billing/cancel"
PENDING_MESSAGE = (
    "Cancellation scheduled. Your account stays on Pro until cancel_at, then moves to "
    "Free. POST /v1/billing/setup before then to keep Pro."
)
FREE_ANSWER = {"tier": "free", "cancel_at": None, "message": "Your account is on the Free tier."}


def cancel(api_client, registered):
    return api_client.post(CANCEL_URL, **registered.auth)


def stripe_subscriptions(customer_id: str | None) -> list:
    assert customer_id is not None, "the agent has no Stripe customer"
    return list(
        stripe.Subscription.list(customer=customer_id, status="all", api_key=TEST_SECRET_KEY)
    )


def iso(timestamp: int) -> str:
    return (
        datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
        .isoformat()
        .replace("+00:00", "Z")
    )


@pytest.fixture
def pro_with_subscription(local_stripe_pro, api_client, registered) -> Agent:
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert len(stripe_subscriptions(agent.stripe_customer_id)) == 1
    return agent


def test_cancel_with_subscription_cancels_at_period_end_and_stays_pro(
    pro_with_subscription, api_client, registered
):
    response = cancel(api_client, registered)

    assert response.status_code == 200
    [subscription] = stripe_subscriptions(pro_with_subscription.stripe_customer_id)
    assert subscription["cancel_at_period_end"] is True
    assert subscription["status"] == "active"
    period_end = iso(subscription["current_period_end"])
    assert response.json() == {"tier": "pro", "cancel_at": period_end, "message": PENDING_MESSAGE}
    assert response["Content-Type"] == "application/json"
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.PRO
    billing = api_client.get("/v1/billing", **registered.auth).json()
    assert (billing["tier"], billing["cancel_at"]) == ("pro", period_end)
    mirrored = djstripe_models.Subscription.objects.get(id=subscription["id"])
    assert mirrored.cancel_at_period_end is True
    event = agent.events.get(kind=AgentEvent.Kind.SUBSCRIPTION_CANCEL_REQUESTED)
    assert event.data == {
        "subscription_ids": [subscription["id"]],
        "cancel_at": period_end[:-1] + "+00:00",
    }
    # Metered calls still count as Pro.
    assert api_client.get("/v1/authorize", **registered.auth)["X-Agent-Tier"] == "pro"


def test_cancel_again_changes_nothing_and_answers_the_same(
    pro_with_subscription, api_client, registered
):
    first = cancel(api_client, registered)

    again = cancel(api_client, registered)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(stripe_subscriptions(pro_with_subscription.stripe_customer_id)) == 1
    assert (
        pro_with_subscription.events.filter(
            kind=AgentEvent.Kind.SUBSCRIPTION_CANCEL_REQUESTED
        ).count()
        == 1
    )


def test_setup_while_cancellation_pending_resumes_the_same_subscription(
    pro_with_subscription, api_client, registered
):
    assert cancel(api_client, registered).status_code == 200

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    [subscription] = stripe_subscriptions(pro_with_subscription.stripe_customer_id)
    assert subscription["cancel_at_period_end"] is False
    assert subscription["status"] == "active"
    billing = api_client.get("/v1/billing", **registered.auth).json()
    assert (billing["tier"], billing["cancel_at"]) == ("pro", None)
    assert djstripe_models.Subscription.objects.get().cancel_at_period_end is False
    resumed = pro_with_subscription.events.get(kind=AgentEvent.Kind.SUBSCRIPTION_RESUMED)
    assert resumed.data["subscription_id"] == subscription["id"]
    # Cancelling again after the resume works again.
    again = cancel(api_client, registered)
    assert again.json()["cancel_at"] is not None
    [subscription] = stripe_subscriptions(pro_with_subscription.stripe_customer_id)
    assert subscription["cancel_at_period_end"] is True


def test_card_on_file_pro_goes_free_at_once(local_stripe, api_client, registered):
    assert setup(api_client, registered, "pm_card_visa").status_code == 200  # no Pro price

    response = cancel(api_client, registered)

    assert response.status_code == 200
    assert response.json() == FREE_ANSWER
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.FREE
    change = agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).first()
    assert change is not None
    assert change.data == {"tier": "free", "stripe_customer_id": agent.stripe_customer_id}
    assert api_client.get("/v1/billing", **registered.auth).json()["call_limit"] == 300
    assert cancel(api_client, registered).json() == FREE_ANSWER


def test_free_agent_cancel_is_200_free_without_stripe(settings, db, api_client, registered):
    settings.STRIPE_SECRET_KEY = ""  # no Stripe call is needed (or possible)

    response = cancel(api_client, registered)

    assert response.status_code == 200
    assert response.json() == FREE_ANSWER
    assert not registered.agent.events.exclude(kind=AgentEvent.Kind.REGISTERED).exists()


def test_cancel_when_stripe_is_unreachable_is_502_and_changes_nothing(
    pro_with_subscription, settings, api_client, registered, closed_port
):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    events = pro_with_subscription.events.count()

    response = cancel(api_client, registered)

    assert_envelope(response, 502, "PAYMENT_PROVIDER_ERROR")
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.PRO
    assert agent.events.count() == events
    assert djstripe_models.Subscription.objects.get().cancel_at_period_end is False


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_AUTHORIZATION": "Bearer ltx_notakey"}],
    ids=["no-key", "malformed-key"],
)
def test_cancel_without_a_valid_key_is_401(db, api_client, headers):
    response = api_client.post(CANCEL_URL, **headers)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == "Bearer"


def test_cancel_only_accepts_post(db, api_client, registered):
    response = api_client.get(CANCEL_URL, **registered.auth)

    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")


def test_with_every_stripe_call_slot_taken_only_a_cancel_that_calls_stripe_is_refused(
    pro_with_subscription, api_client, registered, make_agent, settings
):
    settings.LITHTRIX_STRIPE_CALL_SLOTS = 2
    free = make_agent(name="free-agent")
    [subscription] = stripe_subscriptions(pro_with_subscription.stripe_customer_id)

    # Two other agents' billing actions sit in Stripe, holding both slots.
    with agent_billing_lock(uuid.uuid4(), wait=0), agent_billing_lock(uuid.uuid4(), wait=0):
        free_answer = cancel(api_client, free)
        pro_answer = cancel(api_client, registered)

    # The Free agent's cancel calls no Stripe: answered as always.
    assert free_answer.status_code == 200
    assert free_answer["Content-Type"] == "application/json"
    assert free_answer.json() == FREE_ANSWER
    # The Pro agent's needs Stripe: 503 at once, nothing changed at Stripe or here.
    assert_envelope(pro_answer, 503, "SERVICE_UNAVAILABLE")
    assert int(pro_answer["Retry-After"]) > 0
    [unchanged] = stripe_subscriptions(pro_with_subscription.stripe_customer_id)
    assert unchanged["id"] == subscription["id"]
    assert unchanged["cancel_at_period_end"] is False
    assert not pro_with_subscription.events.filter(
        kind=AgentEvent.Kind.SUBSCRIPTION_CANCEL_REQUESTED
    ).exists()
    # Its own lease was given back: once a slot is free, the cancel goes through.
    answer = cancel(api_client, registered)
    [cancelled] = stripe_subscriptions(pro_with_subscription.stripe_customer_id)
    assert answer.status_code == 200
    assert answer.json() == {
        "tier": "pro",
        "cancel_at": iso(cancelled["current_period_end"]),
        "message": PENDING_MESSAGE,
    }
    assert cancelled["cancel_at_period_end"] is True


@pytest.mark.parametrize(("body", "content_type", "status", "error_code"), NOT_A_JSON_OBJECT)
def test_cancel_refuses_a_body_that_is_not_a_json_object(
    pro_with_subscription, api_client, registered, body, content_type, status, error_code
):
    events = pro_with_subscription.events.count()
    response = api_client.generic(
        "POST", CANCEL_URL, body, content_type=content_type, **registered.auth
    )
    assert_envelope(response, status, error_code)
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.PRO
    assert agent.events.count() == events
    [subscription] = stripe_subscriptions(agent.stripe_customer_id)
    assert subscription["cancel_at_period_end"] is False
