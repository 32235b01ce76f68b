"""Stripe billing writes: the Free -> Pro upgrade, cancellation, Stripe's events, local set-up.

Stripe is reached only through billing.payments.stripe_client; dj-stripe's tables mirror
what Stripe answered. Services never import DRF.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from accounts.services import agent_set_tier
from billing.payments import locks, stripe_client
from billing.payments.selectors import subscription_cancel_at
from lithtrix.errors import PaymentFailedError, PaymentProviderError, ValidationError

logger = logging.getLogger("billing.payments")


def _stripe_id(value: Any) -> str | None:
    """The id of a Stripe reference, expanded (an object) or not (a string)."""
    if value is None or isinstance(value, str):
        return value
    return value["id"]


def billing_setup(*, agent: Agent, payment_method_id: str) -> Agent:
    """Attach ``payment_method_id`` to the agent's Stripe Customer and make the agent Pro.

    Guarantees:
    - Stripe is called first, with no database transaction or row lock open, all
      within one deadline (STRIPE_REQUEST_DEADLINE_SECONDS, retries included).
      Then one short durable transaction records the customer link, the tier and
      the audit rows. A decline (PaymentFailedError), a provider failure or the
      deadline (PaymentProviderError) leaves the agent exactly as it was; dj-stripe's
      mirror rows may already show what Stripe holds (they mirror Stripe, not us).
    - Concurrent billing requests of one agent run one after the other (the
      agent's billing lock, never its row): 409 BILLING_IN_PROGRESS after a few
      seconds of waiting. Metering is never blocked.
    - One Stripe Customer per agent: reused once linked; created with an idempotency
      key derived from the agent id, so a retried request gets the same customer.
    - One Pro subscription per agent (when STRIPE_PRO_PRICE_ID is set): Stripe's list
      of the customer's subscriptions is checked first, so calling setup again,
      also after a lost response, never creates a second; a pending cancellation
      is withdrawn (the subscription resumes).
    - Called again as Pro, it makes the new payment method the invoice default.
    """
    stripe_client.require_configured()
    with locks.agent_billing_lock(agent.pk):
        current, customer_id, payment_method, subscription, resumed = _setup_on_stripe(
            agent=agent, payment_method_id=payment_method_id
        )
        _setup_record(
            agent=current,
            customer_id=customer_id,
            payment_method=payment_method,
            subscription=subscription,
            resumed=resumed,
        )
    agent.tier = Tier.PRO
    agent.stripe_customer_id = customer_id
    logger.info("agent %s upgraded to pro (customer %s)", agent.pk, customer_id)
    return agent


def _setup_on_stripe(*, agent: Agent, payment_method_id: str) -> tuple[Any, ...]:
    """Setup's Stripe calls and the mirror, within the request deadline; no transaction."""
    with stripe_client.deadline():
        current = Agent.objects.get(pk=agent.pk)
        agent_id = str(current.pk)
        customer_id = current.stripe_customer_id
        if not customer_id:
            customer_id = stripe_client.customer_create(
                agent_id=agent_id,
                agent_name=current.agent_name,
                idempotency_key=f"lithtrix-customer-{agent_id}",
            ).id
        payment_method = stripe_client.payment_method_attach(
            payment_method_id=payment_method_id,
            customer_id=customer_id,
            idempotency_key=f"lithtrix-attach-{customer_id}-{payment_method_id}",
        )
        customer = stripe_client.customer_set_default_payment_method(
            customer_id=customer_id, payment_method_id=payment_method.id
        )
        subscription, resumed = _pro_subscription_ensure(
            agent_id=agent_id, customer_id=customer_id, payment_method_id=payment_method.id
        )
        # dj-stripe may fetch related objects while mirroring: Stripe errors there are ours too.
        with stripe_client.translated_errors("djstripe.sync"):
            _mirror(customer=customer, payment_method=payment_method, subscription=subscription)
    return current, customer_id, payment_method, subscription, resumed


def _setup_record(
    *, agent: Agent, customer_id: str, payment_method: Any, subscription: Any, resumed: bool
) -> None:
    """Setup's one short transaction: customer link, audit rows, tier."""
    current = agent
    facts = {
        "stripe_customer_id": customer_id,
        "payment_method_id": payment_method.id,
        "subscription_id": subscription.id if subscription is not None else None,
    }
    with transaction.atomic(durable=True):
        Agent.objects.filter(pk=current.pk).exclude(stripe_customer_id=customer_id).update(
            stripe_customer_id=customer_id, updated_at=timezone.now()
        )
        AgentEvent.objects.create(
            agent=current,
            kind=AgentEvent.Kind.PAYMENT_METHOD_SET,
            reason="Payment method attached through POST /v1/billing/setup.",
            data=facts,
        )
        if resumed:
            AgentEvent.objects.create(
                agent=current,
                kind=AgentEvent.Kind.SUBSCRIPTION_RESUMED,
                reason=f"Pending cancellation of {subscription.id} withdrawn by billing setup.",
                data=facts,
            )
        agent_set_tier(
            agent=current, tier=Tier.PRO, reason="Upgraded through billing setup.", data=facts
        )


def _mirror(*, customer: Any = None, payment_method: Any = None, subscription: Any = None) -> None:
    """Mirror Stripe objects into dj-stripe's tables (outside any transaction of ours)."""
    api_key = stripe_client.api_key()
    if customer is not None:
        djstripe_models.Customer.sync_from_stripe_data(customer, api_key=api_key)
    if payment_method is not None:
        djstripe_models.PaymentMethod.sync_from_stripe_data(payment_method, api_key=api_key)
    if subscription is not None:
        djstripe_models.Subscription.sync_from_stripe_data(subscription, api_key=api_key)


def _pro_subscription_ensure(
    *, agent_id: str, customer_id: str, payment_method_id: str
) -> tuple[Any, bool]:
    """(The live Pro subscription of the customer, else a new one; None without a price,
    whether a pending cancellation was withdrawn).

    A subscription behind on payment (past_due, unpaid) has its open invoice paid
    with the new payment method: Stripe does not retry an unpaid one by itself.
    """
    price_id = settings.STRIPE_PRO_PRICE_ID
    if not price_id:
        return None, False
    existing = stripe_client.subscriptions_of(customer_id=customer_id)
    for subscription in existing:
        if subscription["status"] in stripe_client.ENDED_STATUSES:
            continue
        resumed = False
        # stripe-python 15's objects are not dicts: no .get (absent fields: `in`).
        pending = [
            subscription[name]
            for name in ("cancel_at_period_end", "cancel_at")
            if name in subscription
        ]
        if any(pending):
            subscription = stripe_client.subscription_cancel_at_period_end(
                subscription_id=subscription["id"], cancel=False
            )
            resumed = True
        if subscription["status"] in stripe_client.ENTITLED_STATUSES - {"past_due"}:
            return subscription, resumed
        return _subscription_settle(subscription, payment_method_id=payment_method_id), resumed
    # The key changes only when a subscription ends, so a retry of this very
    # request reuses the subscription it created, and a re-subscription after a
    # cancellation is not answered with the cancelled one.
    created = stripe_client.subscription_create(
        customer_id=customer_id,
        price_id=price_id,
        agent_id=agent_id,
        idempotency_key=f"lithtrix-pro-{customer_id}-{len(existing)}",
    )
    return created, False


def _subscription_settle(subscription: Any, *, payment_method_id: str) -> Any:
    """Pay the latest open invoice of a subscription behind on payment; its state after."""
    invoice_id = _stripe_id(subscription["latest_invoice"])
    if invoice_id:
        invoice = stripe_client.invoice_retrieve(invoice_id=invoice_id)
        if invoice["status"] == "open":
            stripe_client.invoice_pay(invoice_id=invoice_id, payment_method_id=payment_method_id)
    subscription = stripe_client.subscription_retrieve(subscription_id=subscription["id"])
    if subscription["status"] not in stripe_client.ENTITLED_STATUSES:
        raise PaymentFailedError(
            "The Pro subscription could not be brought up to date with this payment method."
        )
    return subscription


def _live_subscriptions(customer_id: str | None) -> list[Any]:
    """The customer's subscriptions that have not ended (they may still charge)."""
    if not customer_id:
        return []
    return [
        s
        for s in stripe_client.subscriptions_of(customer_id=customer_id)
        if s["status"] not in stripe_client.ENDED_STATUSES
    ]


@dataclass(frozen=True)
class Cancellation:
    tier: str
    cancel_at: datetime.datetime | None


def billing_cancel(*, agent: Agent) -> Cancellation:
    """Pro -> Free, at the end of the paid period when there is a subscription.

    Guarantees:
    - With a live subscription: Stripe sets it to cancel at period end
      (cancel_at_period_end); the agent stays Pro until Stripe deletes it
      (customer.subscription.deleted ends Pro). Card-on-file Pro (no
      subscription): Free at once.
    - Idempotent: a repeated call changes nothing and answers the same; a Free
      agent gets tier free without any Stripe call.
    - Stripe first, within the request deadline and under the agent's billing lock
      (no row lock, no transaction), then one durable transaction for the tier
      and the audit row. A Stripe failure: PaymentProviderError, nothing changed.
    """
    with locks.agent_billing_lock(agent.pk):
        return _cancel_locked(agent=agent)


def _cancel_locked(*, agent: Agent) -> Cancellation:
    with stripe_client.deadline():
        current = Agent.objects.get(pk=agent.pk)
        if current.tier == Tier.FREE:
            return Cancellation(tier=Tier.FREE, cancel_at=None)
        live: list[Any] = []
        if current.stripe_customer_id:
            stripe_client.require_configured()
            live = _live_subscriptions(current.stripe_customer_id)
        requested = []
        for index, subscription in enumerate(live):
            if subscription_cancel_at(subscription) is None:
                live[index] = stripe_client.subscription_cancel_at_period_end(
                    subscription_id=subscription["id"], cancel=True
                )
                requested.append(subscription["id"])
        with stripe_client.translated_errors("djstripe.sync"):
            for subscription in live:
                _mirror(subscription=subscription)

    if not live:
        with transaction.atomic(durable=True):
            agent_set_tier(
                agent=current,
                tier=Tier.FREE,
                reason="Pro cancelled through POST /v1/billing/cancel (no subscription).",
                data={"stripe_customer_id": current.stripe_customer_id},
            )
        agent.tier = Tier.FREE
        logger.info("agent %s cancelled card-on-file pro: free now", current.pk)
        return Cancellation(tier=Tier.FREE, cancel_at=None)

    cancel_at = max(
        (at for at in (subscription_cancel_at(s) for s in live) if at is not None),
        default=None,
    )
    if requested:
        with transaction.atomic(durable=True):
            AgentEvent.objects.create(
                agent=current,
                kind=AgentEvent.Kind.SUBSCRIPTION_CANCEL_REQUESTED,
                reason="Cancellation at period end requested through POST /v1/billing/cancel.",
                data={
                    "subscription_ids": requested,
                    "cancel_at": cancel_at.isoformat() if cancel_at else None,
                },
            )
        logger.info("agent %s: subscriptions %s cancel at %s", current.pk, requested, cancel_at)
    return Cancellation(tier=Tier.PRO, cancel_at=cancel_at)


def subscriptions_cancel_now(*, agent: Agent) -> list[str]:
    """End every live subscription of the agent at once (not at period end).

    For account deletion: Stripe stops charging before the agent is erased. Under
    the agent's billing lock and the request deadline, with no transaction open;
    a Stripe failure raises PaymentProviderError and the caller changes nothing.
    Idempotent (an ended subscription is skipped; the cancel call has a key per
    subscription). Returns the ids it cancelled.
    """
    current = Agent.objects.filter(pk=agent.pk).only("stripe_customer_id").first()
    if current is None or not current.stripe_customer_id:
        return []
    stripe_client.require_configured()
    with locks.agent_billing_lock(agent.pk), stripe_client.deadline():
        cancelled = []
        for subscription in _live_subscriptions(current.stripe_customer_id):
            ended = stripe_client.subscription_cancel_now(
                subscription_id=subscription["id"],
                idempotency_key=f"lithtrix-cancel-now-{subscription['id']}",
            )
            with stripe_client.translated_errors("djstripe.sync"):
                _mirror(subscription=ended)
            cancelled.append(subscription["id"])
    if cancelled:
        logger.info("agent %s: subscriptions %s cancelled at once", agent.pk, cancelled)
    return cancelled


# --- Stripe's events (called from billing.payments.webhooks after dj-stripe mirrored them) ---


def _agent_of_customer(customer: Any) -> Agent | None:
    customer_id = _stripe_id(customer)
    if not customer_id:
        return None
    return Agent.objects.filter(stripe_customer_id=customer_id).first()


@transaction.atomic
def subscription_event_apply(*, event: djstripe_models.Event) -> bool:
    """Put the agent back on Free when its subscription stopped entitling it to Pro.

    Decides on the current state, not on the event: dj-stripe has just re-fetched
    the subscription from Stripe and mirrored it. A duplicate, late or
    out-of-order event therefore changes nothing the current state does not call
    for, and agent_set_tier changes the tier once. Returns True when it changed it.
    """
    data = event.data["object"]
    agent = _agent_of_customer(data.get("customer"))
    if agent is None:
        logger.info("event %s: no agent for customer %s", event.id, data.get("customer"))
        return False
    customer_id = agent.stripe_customer_id
    subscriptions = list(djstripe_models.Subscription.objects.filter(customer_id=customer_id))
    if any(s.status in stripe_client.ENTITLED_STATUSES for s in subscriptions):
        return False
    current = next((s for s in subscriptions if s.id == data["id"]), None)
    status = current.status if current is not None else data.get("status")
    if status not in stripe_client.DOWNGRADE_STATUSES:
        return False
    facts = {"event_id": event.id, "subscription_id": data["id"], "status": status}
    changed = agent_set_tier(
        agent=agent,
        tier=Tier.FREE,
        reason=f"Stripe subscription {data['id']} is {status}.",
        data=facts,
    )
    if changed:
        AgentEvent.objects.create(
            agent=agent,
            kind=AgentEvent.Kind.SUBSCRIPTION_ENDED,
            reason=f"Stripe subscription {data['id']} is {status}; back on Free.",
            data=facts,
        )
        logger.info("agent %s back on free: subscription %s %s", agent.pk, data["id"], status)
    return changed


@transaction.atomic
def invoice_payment_failed_record(*, event: djstripe_models.Event) -> bool:
    """Record a failed invoice payment on the agent's audit trail, once per event."""
    invoice = event.data["object"]
    agent = _agent_of_customer(invoice.get("customer"))
    if agent is None:
        return False
    if AgentEvent.objects.filter(
        agent=agent, kind=AgentEvent.Kind.PAYMENT_FAILED, data__event_id=event.id
    ).exists():
        return False
    AgentEvent.objects.create(
        agent=agent,
        kind=AgentEvent.Kind.PAYMENT_FAILED,
        reason=f"Stripe could not collect invoice {invoice.get('id')}.",
        data={
            "event_id": event.id,
            "invoice_id": invoice.get("id"),
            "amount_due": invoice.get("amount_due"),
            "currency": invoice.get("currency"),
            "attempt_count": invoice.get("attempt_count"),
            "next_payment_attempt": invoice.get("next_payment_attempt"),
        },
    )
    logger.info("agent %s: invoice %s payment failed", agent.pk, invoice.get("id"))
    return True


# --- Set-up of dj-stripe's own rows --------------------------------------------------


@transaction.atomic
def local_stripe_account_ensure(
    *, secret_key: str, account_id: str = "acct_localstripe"
) -> djstripe_models.APIKey:
    """The Account and APIKey rows dj-stripe needs for a Stripe-compatible local server.

    dj-stripe looks up the account of a key with GET /v1/account on first use;
    localstripe has no such route, so the rows are made here. For real Stripe keys
    this is not needed (dj-stripe fetches the account itself).
    """
    account, _ = djstripe_models.Account.objects.get_or_create(
        id=account_id, defaults={"livemode": False, "stripe_data": {"id": account_id}}
    )
    key, _ = djstripe_models.APIKey.objects.get_or_create_by_api_key(secret_key)
    if key.djstripe_owner_account_id != account.pk:
        key.djstripe_owner_account = account
        key.name = "localstripe"
        key.save()
    return key


def local_pro_plan_ensure(*, plan_id: str, amount: int = 2900, currency: str = "usd") -> str:
    """The monthly Pro plan on a Stripe-compatible local server (localstripe), made once.

    Stripe accepts a plan id wherever a price id goes, so STRIPE_PRO_PRICE_ID can
    name it. Returns the id.
    """
    try:
        return stripe_client.plan_retrieve(plan_id=plan_id).id
    except ValidationError:
        raise
    except PaymentProviderError as exc:
        cause = exc.__cause__
        if not isinstance(cause, stripe.InvalidRequestError) or cause.http_status != 404:
            raise
    return stripe_client.pro_plan_create(
        plan_id=plan_id, amount=amount, currency=currency, product_name="Lithtrix Pro"
    ).id


@transaction.atomic
def webhook_endpoint_register(
    *,
    url: str,
    secret: str | None = None,
    endpoint_id: str | None = None,
    livemode: bool | None = None,
) -> djstripe_models.WebhookEndpoint:
    """The WebhookEndpoint row Stripe's signed events are checked against.

    Without ``secret`` the endpoint is created on Stripe (which answers with its
    signing secret); with one, it records an endpoint made elsewhere (the Stripe
    dashboard, localstripe's /_config/webhooks).
    """
    # The receivers module imports this one: the event list is read at call time.
    from billing.payments.webhooks import WEBHOOK_EVENTS

    if livemode is None:
        livemode = settings.STRIPE_LIVE_MODE
    if secret is None:
        endpoint = djstripe_models.WebhookEndpoint(url=url)
        stripe_endpoint = stripe_client.webhook_endpoint_create(
            url=url,
            enabled_events=WEBHOOK_EVENTS,
            metadata={"djstripe_uuid": str(endpoint.djstripe_uuid)},
        )
        row = djstripe_models.WebhookEndpoint.sync_from_stripe_data(
            stripe_endpoint, api_key=stripe_client.api_key()
        )
        row.secret = stripe_endpoint["secret"]
        row.save()
        return row
    endpoint_id = endpoint_id or f"we_local_{secrets.token_hex(8)}"
    row, _ = djstripe_models.WebhookEndpoint.objects.update_or_create(
        id=endpoint_id,
        defaults={
            "url": url,
            "secret": secret,
            "livemode": livemode,
            "enabled_events": WEBHOOK_EVENTS,
            "status": "enabled",
            "api_version": "",
            "stripe_data": {"id": endpoint_id, "object": "webhook_endpoint", "url": url},
        },
    )
    return row
