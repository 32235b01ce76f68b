"""Billing's events (billing.tier_changed, billing.cancel_scheduled, billing.payment_failed),
recorded in the transaction of the change they describe."""

from __future__ import annotations

import datetime

import pytest

from accounts.models import Agent, Tier
from billing.tests.conftest import recorded
from billing.tests.test_cancel import cancel, pro_with_subscription
from billing.tests.test_webhooks import (
    deliver,
    endpoint,
    pro_agent,
    stripe_event,
    subscription_now,
)
from events.models import Event

__all__ = ["endpoint", "pro_agent", "pro_with_subscription"]


def events_of(agent: Agent, type: str) -> list[dict]:
    return [e.data for e in Event.objects.filter(agent=agent, type=type).order_by("created_at")]


def test_setup_records_free_to_pro(pro_agent):
    assert events_of(pro_agent, "billing.tier_changed") == [
        {"from": "free", "to": "pro", "reason": "setup"}
    ]


def test_subscription_ending_records_pro_to_free_once(stripe_account, pro_agent, api_client):
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )

    deliver(api_client, payload)
    deliver(api_client, payload)

    assert events_of(pro_agent, "billing.tier_changed")[1:] == [
        {"from": "pro", "to": "free", "reason": "subscription_canceled"}
    ]


def test_cancel_records_cancel_scheduled_with_cancel_at(
    pro_with_subscription, api_client, registered
):
    response = cancel(api_client, registered)
    cancel(api_client, registered)  # nothing new to schedule

    cancel_at = response.json()["cancel_at"].replace("Z", "+00:00")
    assert events_of(pro_with_subscription, "billing.cancel_scheduled") == [
        {"cancel_at": cancel_at}
    ]
    assert Agent.objects.get(pk=pro_with_subscription.pk).tier == Tier.PRO


@pytest.mark.parametrize(
    ("next_payment_attempt", "expected"),
    [
        (
            1766951202,
            {
                "next": "stripe_retries",
                "next_payment_attempt": datetime.datetime.fromtimestamp(
                    1766951202, tz=datetime.UTC
                ).isoformat(),
            },
        ),
        (None, {"next": "subscription_ends_unless_card_updated", "next_payment_attempt": None}),
    ],
    ids=["stripe-retries", "stripe-gave-up"],
)
def test_payment_failed_says_what_happens_next(
    stripe_account, pro_agent, api_client, next_payment_attempt, expected
):
    invoice = recorded("invoice_payment_failed")
    invoice["next_payment_attempt"] = next_payment_attempt
    stripe_account.add(invoice)

    deliver(api_client, stripe_event("invoice.payment_failed", invoice))

    assert events_of(pro_agent, "billing.payment_failed") == [
        {
            "invoice_id": "in_1RLtxProRenewal02",
            "amount_due": 2900,
            "currency": "usd",
            "attempt_count": 1,
            **expected,
        }
    ]


def test_a_failed_event_job_records_no_event(stripe_account, pro_agent, api_client):
    canceled = subscription_now(stripe_account, status="canceled")
    stripe_account.routes[("GET", "/v1/subscriptions/" + canceled["id"])] = lambda p: (
        503,
        recorded("api_error"),
    )

    deliver(api_client, stripe_event("customer.subscription.deleted", canceled))

    assert len(events_of(pro_agent, "billing.tier_changed")) == 1  # the upgrade only
    assert Agent.objects.get(pk=pro_agent.pk).tier == Tier.PRO
