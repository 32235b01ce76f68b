"""POST /v1/billing/setup against a real Stripe-compatible server (localstripe)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import stripe
from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from billing.tests.conftest import TEST_SECRET_KEY
from billing.tests.helpers import rate_headers, set_calls_total

SETUP_URL = "/v1/billing/setup"
UPGRADED = {
    "tier": "pro",
    "call_limit": None,
    "message": "Upgrade successful. Your account is now on the Pro tier.",
}


def setup(api_client, registered, payment_method_id):
    return api_client.post(
        SETUP_URL, {"payment_method_id": payment_method_id}, format="json", **registered.auth
    )


def stripe_customers() -> list:
    return list(stripe.Customer.list(api_key=TEST_SECRET_KEY).auto_paging_iter())


def assert_agent_untouched(agent: Agent) -> None:
    agent.refresh_from_db()
    assert agent.tier == Tier.FREE
    assert agent.stripe_customer_id is None
    assert not djstripe_models.Customer.objects.exists()
    assert not djstripe_models.PaymentMethod.objects.exists()
    assert not agent.events.filter(
        kind__in=[AgentEvent.Kind.TIER_CHANGED, AgentEvent.Kind.PAYMENT_METHOD_SET]
    ).exists()


def test_setup_with_pm_card_visa_upgrades_to_pro_and_mirrors_stripe(
    local_stripe, api_client, registered
):
    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    assert response.json() == UPGRADED
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.PRO
    assert agent.stripe_customer_id is not None and agent.stripe_customer_id.startswith("cus_")
    customer = stripe.Customer.retrieve(agent.stripe_customer_id, api_key=TEST_SECRET_KEY)
    assert customer["metadata"]["agent_id"] == str(agent.pk)
    default_pm = customer["invoice_settings"]["default_payment_method"]
    assert default_pm.startswith("pm_")
    mirrored = djstripe_models.Customer.objects.get(id=agent.stripe_customer_id)
    assert mirrored.stripe_data["metadata"] == {"agent_id": str(agent.pk)}
    assert djstripe_models.PaymentMethod.objects.get(id=default_pm).customer_id == mirrored.id
    assert agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).count() == 1
    assert agent.events.get(kind=AgentEvent.Kind.PAYMENT_METHOD_SET).data == {
        "stripe_customer_id": agent.stripe_customer_id,
        "payment_method_id": default_pm,
        "subscription_id": None,
    }


def test_capped_free_agent_upgrades_and_is_no_longer_capped(local_stripe, api_client, registered):
    set_calls_total(registered.agent, 300)
    capped = api_client.get("/v1/authorize", **registered.auth)
    assert capped.status_code == 402
    assert capped.json()["error_code"] == "OVER_LIMIT"

    assert setup(api_client, registered, "pm_card_visa").status_code == 200

    allowed = api_client.get("/v1/authorize", **registered.auth)
    assert allowed.status_code == 200
    assert allowed["X-Agent-Tier"] == "pro"
    assert rate_headers(allowed)[0] == 600
    billing = api_client.get("/v1/billing", **registered.auth).json()
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert billing == {
        "tier": "pro",
        "calls_total": 301,
        "call_limit": None,
        "over_limit": False,
        "stripe_customer_id": agent.stripe_customer_id,
        "cancel_at": None,
    }


def test_setup_with_declined_card_is_402_and_leaves_agent_free(
    local_stripe, api_client, registered
):
    response = setup(api_client, registered, "pm_card_visa_chargeDeclined")

    assert response.status_code == 402
    assert response.json() == {
        "status": "error",
        "error_code": "PAYMENT_FAILED",
        "message": "Your card was declined.",
    }
    assert_agent_untouched(registered.agent)


def test_setup_after_decline_succeeds_with_another_card(local_stripe, api_client, registered):
    assert setup(api_client, registered, "pm_card_visa_chargeDeclined").status_code == 402

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    registered.agent.refresh_from_db()
    assert registered.agent.tier == Tier.PRO


def test_setup_called_again_as_pro_reuses_customer_and_replaces_default_method(
    local_stripe, api_client, registered
):
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    first_customer = Agent.objects.get(pk=registered.agent.pk).stripe_customer_id
    assert first_customer is not None
    first_pm = stripe.Customer.retrieve(first_customer, api_key=TEST_SECRET_KEY)[
        "invoice_settings"
    ]["default_payment_method"]

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    assert response.json() == UPGRADED
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.stripe_customer_id == first_customer
    assert [c.id for c in stripe_customers()] == [first_customer]
    second_pm = stripe.Customer.retrieve(first_customer, api_key=TEST_SECRET_KEY)[
        "invoice_settings"
    ]["default_payment_method"]
    assert second_pm != first_pm
    assert djstripe_models.Customer.objects.count() == 1
    assert djstripe_models.Customer.objects.get().default_payment_method_id == second_pm
    assert agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).count() == 1


def test_declined_card_as_pro_keeps_pro_and_the_old_default(local_stripe, api_client, registered):
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.stripe_customer_id is not None
    before = stripe.Customer.retrieve(agent.stripe_customer_id, api_key=TEST_SECRET_KEY)

    response = setup(api_client, registered, "pm_card_visa_chargeDeclined")

    assert response.status_code == 402
    after = stripe.Customer.retrieve(agent.stripe_customer_id, api_key=TEST_SECRET_KEY)
    assert (
        after["invoice_settings"]["default_payment_method"]
        == before["invoice_settings"]["default_payment_method"]
    )
    agent.refresh_from_db()
    assert agent.tier == Tier.PRO


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"payment_method_id": None},
        {"payment_method_id": 42},
        {"payment_method_id": ["pm_card_visa"]},
        {"payment_method_id": {"id": "pm_card_visa"}},
        {"payment_method_id": ""},
        {"payment_method_id": "pm_"},
        {"payment_method_id": "card_123"},
        {"payment_method_id": "tok_visa"},
        {"payment_method_id": "pm_card-visa"},
        {"payment_method_id": " pm_card_visa"},
        {"payment_method_id": "pm_card_visa\n"},
        {"payment_method_id": "PM_card_visa"},
        {"payment_method_id": "pm_" + "a" * 300},
    ],
    ids=[
        "missing",
        "null",
        "number",
        "list",
        "object",
        "empty",
        "prefix-only",
        "card-id",
        "token-id",
        "dash",
        "leading-space",
        "trailing-newline",
        "upper-case-prefix",
        "too-long",
    ],
)
def test_setup_with_invalid_payment_method_id_is_400_before_stripe(
    settings, db, api_client, registered, closed_port, body
):
    # Stripe points at a closed port: a call would answer 502, not 400.
    settings.STRIPE_SECRET_KEY = TEST_SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_lithtrixTestSuite0123456789"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"

    response = api_client.post(SETUP_URL, body, format="json", **registered.auth)

    assert response.status_code == 400
    payload = response.json()
    assert payload["status"] == "error"
    assert payload["error_code"] == "VALIDATION_ERROR"
    assert list(payload["details"]) == ["payment_method_id"]
    assert_agent_untouched(registered.agent)


def test_setup_with_malformed_json_is_400(local_stripe, api_client, registered):
    response = api_client.post(
        SETUP_URL, b'{"payment_method_id": ', content_type="application/json", **registered.auth
    )

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert_agent_untouched(registered.agent)


def test_setup_with_payment_method_stripe_does_not_know_is_400(
    local_stripe, api_client, registered
):
    response = setup(api_client, registered, "pm_doesNotExist123")

    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "error_code": "VALIDATION_ERROR",
        "message": "The request is invalid.",
        "details": {"payment_method_id": ["Stripe does not know this id."]},
    }
    assert_agent_untouched(registered.agent)


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_AUTHORIZATION": "Bearer ltx_notakey"}, {"HTTP_AUTHORIZATION": "Basic abc"}],
    ids=["no-key", "malformed-key", "wrong-scheme"],
)
def test_setup_without_a_valid_key_is_401(local_stripe, api_client, registered, headers):
    response = api_client.post(
        SETUP_URL, {"payment_method_id": "pm_card_visa"}, format="json", **headers
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error_code"] == "INVALID_API_KEY"
    assert stripe_customers() == []


def test_setup_when_stripe_is_unreachable_is_502_and_changes_nothing(
    local_stripe, settings, api_client, registered, closed_port
):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"
    settings.STRIPE_MAX_NETWORK_RETRIES = 1

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 502
    assert response.json() == {
        "status": "error",
        "error_code": "PAYMENT_PROVIDER_ERROR",
        "message": "The payment provider could not be reached. Nothing was changed; retry later.",
    }
    assert_agent_untouched(registered.agent)


def test_stripe_unreachable_is_one_warning_per_outage_not_lines_per_attempt(
    local_stripe, settings, api_client, registered, closed_port, caplog
):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"
    settings.STRIPE_MAX_NETWORK_RETRIES = 1

    with caplog.at_level(logging.INFO):
        statuses = [setup(api_client, registered, "pm_card_visa").status_code for _ in range(3)]

    assert statuses == [502, 502, 502]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Three requests of two attempts each: six failures, one line.
    assert [r.getMessage() for r in warnings] == [
        "stripe unavailable (APIConnectionError): billing requests answer 502"
    ]
    assert not [r for r in caplog.records if r.exc_info]


def test_setup_when_stripe_times_out_is_502_and_changes_nothing(
    local_stripe, settings, api_client, registered, black_hole
):
    settings.STRIPE_API_BASE = black_hole
    settings.STRIPE_TIMEOUT_SECONDS = 0.5
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    started = time.monotonic()

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 502
    assert response.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    assert time.monotonic() - started < 10
    assert_agent_untouched(registered.agent)


@pytest.mark.parametrize("url", [SETUP_URL, "/v1/billing/config"])
def test_billing_without_stripe_keys_is_503(settings, db, api_client, registered, url):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PUBLISHABLE_KEY = ""

    if url == SETUP_URL:
        response = setup(api_client, registered, "pm_card_visa")
    else:
        response = api_client.get(url)

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "error_code": "BILLING_UNAVAILABLE",
        "message": "Billing is not configured on this deployment.",
    }
    registered.agent.refresh_from_db()
    assert registered.agent.tier == Tier.FREE


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_setups_of_one_agent_make_one_customer(local_stripe, registered):
    from django.db import connection
    from rest_framework.test import APIClient

    results = []
    barrier = threading.Barrier(2)

    def run():
        client = APIClient()
        barrier.wait()
        try:
            results.append(setup(client, registered, "pm_card_visa").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [200, 200]
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert [c.id for c in stripe_customers()] == [agent.stripe_customer_id]
    assert agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).count() == 1
