"""The audit rows and events of billing changes, written inside the caller's transaction.

Each change that its owner is told about records its event (events.services.event_record)
in the same transaction: billing.tier_changed, billing.cancel_scheduled,
billing.payment_failed. Event data is small and never holds a card detail.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone

from accounts.models import Agent, AgentEvent, Tier
from accounts.services import agent_set_tier
from events.services import event_record


def tier_change(
    *, agent: Agent, tier: str, reason: str, event_reason: str, data: dict | None = None
) -> bool:
    """Set the agent's tier with its audit row; False (nothing written) when it had it.

    ``event_reason`` is the short code the owner is told (setup, cancel,
    subscription_canceled, reconciliation, ...).
    """
    previous = agent.tier
    changed = agent_set_tier(agent=agent, tier=tier, reason=reason, data=data)
    if changed:
        event_record(
            agent=agent,
            type="billing.tier_changed",
            data={"from": previous, "to": tier, "reason": event_reason},
        )
    return changed


def customer_forget(*, agent: Agent, customer_id: str, action: str) -> None:
    """Stripe no longer knows the agent's customer: no subscription. The agent is Free
    and unlinked (setup makes a new customer), with an audit row either way."""
    Agent.objects.filter(pk=agent.pk, stripe_customer_id=customer_id).update(
        stripe_customer_id=None, updated_at=timezone.now()
    )
    reason = f"Stripe no longer knows customer {customer_id} ({action}): no subscription."
    facts = {"stripe_customer_id": customer_id}
    if not tier_change(
        agent=agent,
        tier=Tier.FREE,
        reason=reason,
        event_reason="stripe_customer_missing",
        data=facts,
    ):
        AgentEvent.objects.create(
            agent=agent, kind=AgentEvent.Kind.SUBSCRIPTION_ENDED, reason=reason, data=facts
        )
    agent.stripe_customer_id = None


def cancel_scheduled(
    *, agent: Agent, subscription_ids: list[str], cancel_at: datetime.datetime | None
) -> None:
    """A cancellation at period end was requested: audit row and event."""
    at = cancel_at.isoformat() if cancel_at else None
    event_record(agent=agent, type="billing.cancel_scheduled", data={"cancel_at": at})
    AgentEvent.objects.create(
        agent=agent,
        kind=AgentEvent.Kind.SUBSCRIPTION_CANCEL_REQUESTED,
        reason="Cancellation at period end requested through POST /v1/billing/cancel.",
        data={
            "subscription_ids": subscription_ids,
            "cancel_at": at,
        },
    )


def payment_failed(*, agent: Agent, event_id: str, invoice: dict[str, Any]) -> None:
    """Stripe could not collect an invoice: audit row, and an event saying what comes next.

    Stripe tries again at ``next_payment_attempt`` (Pro continues meanwhile); without
    one it has stopped trying, and the subscription ends (Free) unless a new card is
    set up (POST /v1/billing/setup pays the open invoice).
    """
    next_attempt = invoice.get("next_payment_attempt")
    event_record(
        agent=agent,
        type="billing.payment_failed",
        data={
            "invoice_id": invoice.get("id"),
            "amount_due": invoice.get("amount_due"),
            "currency": invoice.get("currency"),
            "attempt_count": invoice.get("attempt_count"),
            "next_payment_attempt": (
                datetime.datetime.fromtimestamp(int(next_attempt), tz=datetime.UTC).isoformat()
                if next_attempt
                else None
            ),
            "next": "stripe_retries" if next_attempt else "subscription_ends_unless_card_updated",
        },
    )
    AgentEvent.objects.create(
        agent=agent,
        kind=AgentEvent.Kind.PAYMENT_FAILED,
        reason=f"Stripe could not collect invoice {invoice.get('id')}.",
        data={
            "event_id": event_id,
            "invoice_id": invoice.get("id"),
            "amount_due": invoice.get("amount_due"),
            "currency": invoice.get("currency"),
            "attempt_count": invoice.get("attempt_count"),
            "next_payment_attempt": invoice.get("next_payment_attempt"),
        },
    )
