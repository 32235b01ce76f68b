"""The Stripe calls billing makes, each through stripe_client (key, deadline, logs, errors).

Every call leaves as the API's errors: a decline is PaymentFailedError (402), anything
else PaymentProviderError (502) with Stripe's error as its cause.
"""

from __future__ import annotations

from typing import Any

import stripe

from billing.payments.stripe_client import api_key, call, translated_errors


def customer_create(*, agent_id: str, agent_name: str, idempotency_key: str) -> stripe.Customer:
    """Create the Stripe Customer of an agent.

    The idempotency key makes a retried request (a timeout, a retry after a decline
    within Stripe's 24 h window) return the customer created the first time.
    """
    return call(
        "customer.create",
        stripe.Customer.create,
        name=agent_name,
        description=f"Lithtrix agent {agent_id}",
        metadata={"agent_id": agent_id},
        idempotency_key=idempotency_key,
    )


def customer_retrieve(*, customer_id: str) -> stripe.Customer:
    """A customer; Stripe answers a deleted one with ``deleted: true``."""
    return call("customer.retrieve", stripe.Customer.retrieve, customer_id)


def payment_method_attach(
    *, payment_method_id: str, customer_id: str, idempotency_key: str
) -> stripe.PaymentMethod:
    """Attach a PaymentMethod to a customer: 402 when declined, 400 when Stripe does not know it."""
    with translated_errors("payment_method.attach", missing_field="payment_method_id"):
        return stripe.PaymentMethod.attach(
            payment_method_id,
            customer=customer_id,
            api_key=api_key(),
            idempotency_key=idempotency_key,
        )


def customer_set_default_payment_method(
    *, customer_id: str, payment_method_id: str
) -> stripe.Customer:
    return call(
        "customer.update",
        stripe.Customer.modify,
        customer_id,
        invoice_settings={"default_payment_method": payment_method_id},
    )


def subscriptions_of(*, customer_id: str) -> list[stripe.Subscription]:
    """All of a customer's subscriptions, ended ones included."""
    with translated_errors("subscription.list"):
        page = stripe.Subscription.list(
            customer=customer_id, status="all", limit=100, api_key=api_key()
        )
        return list(page.auto_paging_iter())


def subscription_create(
    *, customer_id: str, price_id: str, agent_id: str, idempotency_key: str
) -> stripe.Subscription:
    """Subscribe a customer to a price; the first invoice is paid now or nothing is created.

    error_if_incomplete: a failed first payment is a decline (402), not an
    incomplete subscription left behind.
    """
    return call(
        "subscription.create",
        stripe.Subscription.create,
        customer=customer_id,
        items=[{"price": price_id}],
        payment_behavior="error_if_incomplete",
        metadata={"agent_id": agent_id},
        idempotency_key=idempotency_key,
    )


def subscription_retrieve(*, subscription_id: str) -> stripe.Subscription:
    return call("subscription.retrieve", stripe.Subscription.retrieve, subscription_id)


def subscription_cancel_at_period_end(*, subscription_id: str, cancel: bool) -> stripe.Subscription:
    """Set (True) or withdraw (False) the cancellation at the end of the paid period.

    Setting a flag is idempotent by nature; no fixed idempotency key across
    requests (it would replay a stale answer after a cancel -> resume -> cancel).
    stripe-python still sends one key per call for its own retries.
    """
    return call(
        "subscription.update",
        stripe.Subscription.modify,
        subscription_id,
        cancel_at_period_end=cancel,
    )


def subscription_cancel_now(*, subscription_id: str, idempotency_key: str) -> stripe.Subscription:
    """End a subscription at once (DELETE /v1/subscriptions/<id>)."""
    return call(
        "subscription.cancel",
        stripe.Subscription.cancel,
        subscription_id,
        idempotency_key=idempotency_key,
    )


def invoice_retrieve(*, invoice_id: str) -> stripe.Invoice:
    return call("invoice.retrieve", stripe.Invoice.retrieve, invoice_id)


def invoice_pay(*, invoice_id: str, payment_method_id: str) -> stripe.Invoice:
    """Pay an open invoice with a payment method; a decline raises PaymentFailedError."""
    return call("invoice.pay", stripe.Invoice.pay, invoice_id, payment_method=payment_method_id)


def webhook_endpoint_create(*, url: str, enabled_events: list[str], metadata: dict) -> Any:
    return call(
        "webhook_endpoint.create",
        stripe.WebhookEndpoint.create,
        url=url,
        enabled_events=enabled_events,
        metadata=metadata,
        # Events in the API version this library speaks.
        api_version=stripe.api_version,
    )


def pro_plan_create(*, plan_id: str, amount: int, currency: str, product_name: str) -> Any:
    """A monthly Plan (a legacy Price: its id goes wherever a price id goes) and its Product.

    For Stripe-compatible local servers, which have Plans but no Prices.
    """
    product = call(
        "product.create",
        stripe.Product.create,
        name=product_name,
        idempotency_key=f"lithtrix-product-{plan_id}",
    )
    return call(
        "plan.create",
        stripe.Plan.create,
        id=plan_id,
        product=product.id,
        amount=amount,
        currency=currency,
        interval="month",
        idempotency_key=f"lithtrix-plan-{plan_id}",
    )


def plan_retrieve(*, plan_id: str) -> Any:
    # Before the local Pro plan is made, its 404 is the expected answer.
    with translated_errors("plan.retrieve", missing_is_expected=True):
        return stripe.Plan.retrieve(plan_id, api_key=api_key())
