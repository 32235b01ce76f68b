"""The Pro subscription of POST /v1/billing/setup, against recorded Stripe JSON.

localstripe has no Prices, so these paths answer from billing/tests/fixtures.
"""

from __future__ import annotations

from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from billing.tests.conftest import CUSTOMER, SUBSCRIPTION, recorded
from billing.tests.test_setup import UPGRADED, assert_agent_untouched, setup


def test_setup_with_pro_price_subscribes_and_mirrors_the_subscription(
    stripe_account, api_client, registered
):
    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    assert response.json() == UPGRADED
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.tier == Tier.PRO
    assert agent.stripe_customer_id == CUSTOMER
    assert stripe_account.calls_to("POST", "/v1/subscriptions") == 1
    _, _, params = next(c for c in stripe_account.calls if c[:2] == ("POST", "/v1/subscriptions"))
    assert params["items[0][price]"] == ["price_1QproMonthlyLithtrix"]
    assert params["payment_behavior"] == ["error_if_incomplete"]
    subscription = djstripe_models.Subscription.objects.get()
    assert (subscription.id, subscription.customer_id, subscription.status) == (
        SUBSCRIPTION,
        CUSTOMER,
        "active",
    )
    assert djstripe_models.Customer.objects.get().id == CUSTOMER
    assert djstripe_models.PaymentMethod.objects.get().id == "pm_1RLtxVisa4242Card01"
    assert agent.events.get(kind=AgentEvent.Kind.PAYMENT_METHOD_SET).data["subscription_id"] == (
        SUBSCRIPTION
    )


def test_setup_called_again_never_creates_a_second_subscription(
    stripe_account, api_client, registered
):
    assert setup(api_client, registered, "pm_card_visa").status_code == 200

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    assert stripe_account.calls_to("POST", "/v1/customers") == 1
    assert stripe_account.calls_to("POST", "/v1/subscriptions") == 1
    assert djstripe_models.Subscription.objects.count() == 1
    assert Agent.objects.get(pk=registered.agent.pk).stripe_customer_id == CUSTOMER


def test_retried_setup_reuses_the_customer_idempotency_key(stripe_account, api_client, registered):
    # Stripe fails after the customer exists; the retry must send the same key,
    # so Stripe answers with that customer instead of making a second one.
    stripe_account.routes[("POST", "/v1/payment_methods/pm_card_visa/attach")] = lambda p: (
        500,
        recorded("api_error"),
    )
    assert setup(api_client, registered, "pm_card_visa").status_code == 502
    del stripe_account.routes[("POST", "/v1/payment_methods/pm_card_visa/attach")]
    stripe_account.routes[("POST", "/v1/payment_methods/pm_card_visa/attach")] = lambda p: (
        200,
        stripe_account.objects["pm_1RLtxVisa4242Card01"],
    )

    assert setup(api_client, registered, "pm_card_visa").status_code == 200

    keys = [key for path, key in stripe_account.idempotency_keys if path == "/v1/customers"]
    assert keys == [f"lithtrix-customer-{registered.agent.pk}"] * 2


def test_setup_after_subscription_create_failed_subscribes_once(
    stripe_account, api_client, registered
):
    create = stripe_account.routes[("POST", "/v1/subscriptions")]
    stripe_account.routes[("POST", "/v1/subscriptions")] = lambda p: (500, recorded("api_error"))

    first = setup(api_client, registered, "pm_card_visa")

    assert first.status_code == 502
    assert first.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    assert_agent_untouched(registered.agent)

    stripe_account.routes[("POST", "/v1/subscriptions")] = create
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    assert len(stripe_account.subscriptions) == 1
    assert djstripe_models.Subscription.objects.count() == 1


def test_declined_first_subscription_payment_is_402_and_agent_stays_free(
    stripe_account, api_client, registered
):
    stripe_account.routes[("POST", "/v1/subscriptions")] = lambda p: (
        402,
        recorded("card_declined"),
    )

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 402
    assert response.json() == {
        "status": "error",
        "error_code": "PAYMENT_FAILED",
        "message": "Your card has insufficient funds.",
    }
    assert_agent_untouched(registered.agent)
    assert not djstripe_models.Subscription.objects.exists()


def test_setup_after_the_subscription_was_canceled_subscribes_again(
    stripe_account, api_client, registered
):
    canceled = recorded("subscription")
    canceled.update(id="sub_1RLtxProOldCanceled", status="canceled", ended_at=1764000000)
    stripe_account.subscriptions.append(canceled)

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    assert stripe_account.calls_to("POST", "/v1/subscriptions") == 1
    keys = [key for path, key in stripe_account.idempotency_keys if path == "/v1/subscriptions"]
    assert keys == [f"lithtrix-pro-{CUSTOMER}-1"]


def _unpaid_subscription(stripe_account) -> dict:
    """An unpaid Pro subscription whose renewal invoice is still open."""
    unpaid = recorded("subscription")
    unpaid.update(status="unpaid", latest_invoice="in_1RLtxProRenewal02")
    stripe_account.subscriptions.append(unpaid)
    stripe_account.add(unpaid, recorded("invoice_payment_failed"))
    return unpaid


def test_setup_with_an_unpaid_subscription_pays_its_open_invoice(
    stripe_account, api_client, registered
):
    unpaid = _unpaid_subscription(stripe_account)

    def pay(params):
        stripe_account.objects[SUBSCRIPTION] = {**unpaid, "status": "active"}
        return 200, {**recorded("invoice_payment_failed"), "status": "paid", "amount_remaining": 0}

    stripe_account.routes[("POST", "/v1/invoices/in_1RLtxProRenewal02/pay")] = pay

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 200
    _, _, params = next(
        c for c in stripe_account.calls if c[1] == "/v1/invoices/in_1RLtxProRenewal02/pay"
    )
    assert params["payment_method"] == ["pm_1RLtxVisa4242Card01"]
    assert stripe_account.calls_to("POST", "/v1/subscriptions") == 0
    assert djstripe_models.Subscription.objects.get().status == "active"
    assert Agent.objects.get(pk=registered.agent.pk).tier == Tier.PRO


def test_setup_with_an_unpaid_subscription_and_a_declined_card_stays_free(
    stripe_account, api_client, registered
):
    _unpaid_subscription(stripe_account)
    stripe_account.routes[("POST", "/v1/invoices/in_1RLtxProRenewal02/pay")] = lambda p: (
        402,
        recorded("card_declined"),
    )

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 402
    assert response.json()["message"] == "Your card has insufficient funds."
    assert_agent_untouched(registered.agent)
    assert stripe_account.calls_to("POST", "/v1/subscriptions") == 0


def test_stripe_failing_while_mirroring_is_502_and_changes_nothing(
    stripe_account, api_client, registered
):
    # dj-stripe fetches the customer's default payment method while mirroring it.
    stripe_account.routes[("GET", "/v1/payment_methods/pm_1RLtxVisa4242Card01")] = lambda p: (
        503,
        recorded("api_error"),
    )

    response = setup(api_client, registered, "pm_card_visa")

    assert response.status_code == 502
    assert response.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    assert_agent_untouched(registered.agent)
    assert not djstripe_models.Subscription.objects.exists()
