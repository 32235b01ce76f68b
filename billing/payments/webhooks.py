"""What the project does with Stripe's events, hooked after dj-stripe's own handlers.

dj-stripe's signed webhook view checks the signature against the endpoint's
secret, stores the event once (a replayed event id is not processed again),
re-fetches the object from Stripe and mirrors it; then these receivers run in
the same transaction, so a failure rolls everything back and Stripe retries.
"""

from __future__ import annotations

import json
from typing import Any

import stripe
from djstripe.models import WebhookEndpoint

from billing.payments import services as payments


def on_subscription_changed(sender: Any, event: Any, **kwargs: Any) -> None:
    payments.subscription_event_apply(event=event)


def on_invoice_payment_failed(sender: Any, event: Any, **kwargs: Any) -> None:
    payments.invoice_payment_failed_record(event=event)


# The events the project acts on, each with its receiver; Stripe is asked to send
# exactly these (webhook endpoints are created with WEBHOOK_EVENTS).
RECEIVERS = {
    "customer.subscription.deleted": on_subscription_changed,
    "customer.subscription.updated": on_subscription_changed,
    "invoice.payment_failed": on_invoice_payment_failed,
}
WEBHOOK_EVENTS = list(RECEIVERS)


def endpoint_signed_for(*, payload: bytes, signature: str) -> WebhookEndpoint | None:
    """The endpoint whose secret signed ``payload`` (dj-stripe's view checks it again)."""
    body = payload.decode("utf-8", errors="replace")
    for endpoint in WebhookEndpoint.objects.exclude(secret="").order_by("-djstripe_created"):
        try:
            stripe.WebhookSignature.verify_header(
                body, signature, endpoint.secret, endpoint.djstripe_tolerance
            )
        except stripe.SignatureVerificationError:
            continue
        return endpoint
    return None


def event_summary(payload: bytes) -> dict[str, str]:
    """The id and type of an event body, for log lines (never the object's data)."""
    try:
        event = json.loads(payload)
    except ValueError:
        event = {}
    if not isinstance(event, dict):
        event = {}
    return {"id": str(event.get("id", "-")), "type": str(event.get("type", "-"))}


def on_agent_deletion_requested(sender: Any, agent: Any, **kwargs: Any) -> None:
    """accounts.signals.agent_deletion_requested: Stripe stops charging before the agent goes.

    Every live subscription is cancelled at once (not at period end); a Stripe
    failure raises PaymentProviderError (502), which aborts the deletion.
    """
    payments.subscriptions_cancel_now(agent=agent)


def connect() -> None:
    # Importing dj-stripe's handlers first connects them first: signal receivers
    # run in connection order, and ours must see the freshly mirrored object.
    import djstripe.event_handlers  # noqa: F401
    from djstripe.signals import WEBHOOK_SIGNALS

    for event_type, receiver in RECEIVERS.items():
        WEBHOOK_SIGNALS[event_type].connect(receiver, dispatch_uid=f"lithtrix:{event_type}")

    from accounts.signals import agent_deletion_requested

    agent_deletion_requested.connect(
        on_agent_deletion_requested, dispatch_uid="lithtrix:billing:agent_deletion_requested"
    )
