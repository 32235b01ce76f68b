"""Stripe hanging: one deadline per request, no lock that metering needs, 409 for a second setup."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Agent, AgentEvent, Tier
from billing.models import BillingLease
from billing.payments import stripe_client
from billing.tests.test_setup import assert_agent_untouched, setup
from testing.assertions import assert_envelope, wait_for

DEADLINE = 2.0
# Long enough that a loaded machine still answers everything else inside it.
HANG_DEADLINE = 5.0
MARGIN = 1.0


@pytest.fixture
def hanging_stripe(local_stripe, settings, black_hole) -> str:
    """Stripe accepts connections and never answers; generous per-call timeouts and
    retries, so only the request deadline can end a setup in time."""
    settings.STRIPE_API_BASE = black_hole
    settings.STRIPE_TIMEOUT_SECONDS = 20
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    settings.STRIPE_REQUEST_DEADLINE_SECONDS = DEADLINE
    return black_hole


def test_setup_against_a_hanging_stripe_is_502_within_the_deadline(
    hanging_stripe, api_client, registered
):
    started = time.monotonic()

    response = setup(api_client, registered, "pm_card_visa")

    elapsed = time.monotonic() - started
    assert_envelope(response, 502, "PAYMENT_PROVIDER_ERROR")
    assert elapsed < DEADLINE + MARGIN, elapsed
    assert_agent_untouched(registered.agent)


def test_no_stripe_call_once_the_deadline_passed(local_stripe, settings, monkeypatch, caplog):
    calls = []
    client = stripe_client.LoggingRequestsClient(timeout=(5, 20))
    monkeypatch.setattr(client, "request", lambda *a, **k: calls.append(a))  # never reached

    with stripe_client.deadline(0.01), caplog.at_level(logging.INFO):
        time.sleep(0.02)
        with pytest.raises(stripe_client.DeadlineExceeded):
            stripe_client.LoggingRequestsClient.request(client, "get", "http://x/v1/a", {})
        assert client._should_retry(None, stripe_client.DeadlineExceeded("x"), 0, 5) is False
    assert calls == []
    # A Stripe too slow for the deadline is the outage's warning, like one that refuses.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "stripe unavailable (DeadlineExceeded): billing requests answer 502"
    ]


def test_attempt_timeouts_are_cut_to_the_time_left(local_stripe):
    client = stripe_client.LoggingRequestsClient(timeout=(5, 20))
    assert client._timeout == (5, 20)

    with stripe_client.deadline(1.5):
        connect, read = client._timeout

    assert 1.0 < connect <= 1.5 and 1.0 < read <= 1.5


def _timed(fn):
    started = time.monotonic()
    response = fn()
    return response, time.monotonic() - started


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_while_a_setup_hangs_metering_and_other_agents_answer_fast(
    hanging_stripe, settings, make_agent
):
    # Causal, not timed: everything below must come back while the first setup is
    # still waiting on Stripe (its thread alive), whatever the machine's load.
    settings.STRIPE_REQUEST_DEADLINE_SECONDS = HANG_DEADLINE
    settings.STRIPE_BILLING_LOCK_WAIT_SECONDS = 0.5
    agent = make_agent(name="hanging-agent")
    other = make_agent(name="other-agent")
    hung: dict = {}

    def hang():
        try:
            hung["response"], hung["elapsed"] = _timed(
                lambda: setup(APIClient(), agent, "pm_card_visa")
            )
        finally:
            connection.close()

    thread = threading.Thread(target=hang)
    thread.start()
    # The first setup holds its billing lease (and goes on to wait on Stripe).
    assert wait_for(
        lambda: BillingLease.objects.filter(agent_id=agent.agent.pk).exists(),
        timeout=HANG_DEADLINE,
    )
    try:
        client = APIClient()
        authorize = client.get("/v1/authorize", **agent.auth)
        me = client.get("/v1/me", **other.auth)
        billing = client.get("/v1/billing", **agent.auth)
        # A second setup of the same agent waits its bounded time, then 409.
        second, second_s = _timed(lambda: setup(client, agent, "pm_card_visa"))
        first_still_hanging = thread.is_alive()
    finally:
        thread.join(timeout=HANG_DEADLINE + 5)

    assert first_still_hanging
    assert (authorize.status_code, authorize["X-Agent-Tier"]) == (200, "free")
    assert me.status_code == 200
    assert billing.status_code == 200
    body = assert_envelope(second, 409, "BILLING_IN_PROGRESS")
    assert body["message"]
    assert second["Retry-After"] == "2"
    assert second_s >= 0.5, second_s
    assert_envelope(hung["response"], 502, "PAYMENT_PROVIDER_ERROR")
    assert hung["elapsed"] < HANG_DEADLINE + MARGIN, hung["elapsed"]
    assert not BillingLease.objects.exists()
    refreshed = Agent.objects.get(pk=agent.agent.pk)
    assert (refreshed.tier, refreshed.stripe_customer_id, refreshed.calls_total) == (
        Tier.FREE,
        None,
        1,
    )
    assert not refreshed.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).exists()
