"""Writes to agents."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Agent, AgentEvent, Tier
from accounts.signals import agent_deleted, agent_deletion_requested
from events.services import event_record
from keys.models import KeyEvent
from keys.services import api_key_issue, api_keys_revoke_all
from lithtrix.core.exceptions import AgentAlreadyExistsError


@dataclass(frozen=True)
class Registration:
    agent: Agent
    api_key: str

    def __repr__(self) -> str:
        return f"Registration(agent={self.agent.pk})"


def agent_register(
    *, agent_name: str, owner_identifier: str, ip: str | None = None
) -> Registration:
    """Create an agent and its first key, atomically.

    The (agent_name, owner_identifier) pair is unique at the database level, so two
    concurrent registrations of one pair give one agent and one AgentAlreadyExistsError.
    """
    try:
        with transaction.atomic():
            agent = Agent.objects.create(agent_name=agent_name, owner_identifier=owner_identifier)
            AgentEvent.objects.create(agent=agent, kind=AgentEvent.Kind.REGISTERED, ip=ip)
            key = api_key_issue(agent=agent, ip=ip)
    except IntegrityError:
        if Agent.objects.filter(agent_name=agent_name, owner_identifier=owner_identifier).exists():
            raise AgentAlreadyExistsError() from None
        raise
    return Registration(agent=agent, api_key=key)


@transaction.atomic
def agent_set_tier(
    *,
    agent: Agent,
    tier: str,
    actor: User | None = None,
    reason: str = "",
    data: dict | None = None,
) -> bool:
    """Set ``agent``'s tier; returns False (and writes nothing) when it already had it.

    One conditional UPDATE, so repeated or concurrent calls (webhook retries, admin
    double clicks) change the tier and write the audit row once. A change by staff
    (``actor``) is told to the owner here (billing.tier_changed); changes that Stripe
    drives record theirs where they are decided, with Stripe's facts.
    """
    changed = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(tier=tier)
        .update(tier=tier, updated_at=timezone.now())
    )
    if changed:
        AgentEvent.objects.create(
            agent=agent,
            kind=AgentEvent.Kind.TIER_CHANGED,
            actor=actor,
            reason=reason,
            data={"tier": tier, **(data or {})},
        )
        if actor is not None:
            event_record(
                agent=agent,
                type="billing.tier_changed",
                # The same shape as Stripe-driven changes (billing.payments.records);
                # two tiers, so the one it left is the other.
                data={
                    "from": (Tier.FREE if tier == Tier.PRO else Tier.PRO).value,
                    "to": tier,
                    "reason": "support",
                },
            )
    agent.tier = tier
    return bool(changed)


@transaction.atomic
def agent_reset_usage(*, agent: Agent, actor: User | None, reason: str) -> int:
    """Set ``agent``'s lifetime call counter to 0; returns the count it had.

    The row is locked so the recorded previous count is exact even while the
    agent keeps calling.
    """
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    previous = locked.calls_total
    Agent.objects.filter(pk=agent.pk).update(calls_total=0, updated_at=timezone.now())
    AgentEvent.objects.create(
        agent=agent,
        kind=AgentEvent.Kind.USAGE_RESET,
        actor=actor,
        reason=reason,
        data={"previous_calls_total": previous},
    )
    agent.calls_total = 0
    return previous


def agent_delete(*, agent: Agent, actor: User | None = None, reason: str = "") -> bool:
    """Delete ``agent``: keys revoked, name and owner erased to a tombstone, audited.

    First ``accounts.signals.agent_deletion_requested`` is sent outside any
    transaction (billing cancels the Stripe subscription there; a receiver raising
    ApiError aborts with nothing changed). Then one durable transaction, with the
    agent's row locked: every key revoked, agent_name and owner_identifier replaced
    by "deleted-<id>" (the pair may register again), deleted_at set, IP addresses
    dropped from its audit rows, an AgentEvent, and an agent.deleted event for the
    owner (holding the name and owner the tombstone erases). Usage counts and audit
    rows stay.
    Returns False (and changes nothing) when the agent was already deleted.
    """
    agent_deletion_requested.send(sender=Agent, agent=agent)
    with transaction.atomic(durable=True):
        # The row lock orders this after any rotation or reissue in flight (they lock it
        # too, in the same mode: NO KEY UPDATE lets key inserts referencing the agent run).
        locked = (
            Agent.objects.select_for_update(no_key=True)
            .filter(pk=agent.pk, deleted_at__isnull=True)
            .first()
        )
        if locked is None:
            return False
        now = timezone.now()
        # Recorded before the tombstone erases them: the notice goes to this owner.
        # No personal field in the event, which is kept: owner e-mail reads the name
        # and address when the event is recorded (mail.services), and erases them
        # once its messages are done with.
        event_record(
            agent=agent,
            type="agent.deleted",
            data={"source": "admin" if actor is not None else "agent"},
        )
        api_keys_revoke_all(agent=agent, actor=actor, reason="Agent deleted")
        tombstone = f"deleted-{agent.pk}"
        Agent.objects.filter(pk=agent.pk).update(
            agent_name=tombstone, owner_identifier=tombstone, deleted_at=now, updated_at=now
        )
        AgentEvent.objects.filter(agent=agent).update(ip=None)
        KeyEvent.objects.filter(agent=agent).update(ip=None)
        AgentEvent.objects.create(
            agent=agent,
            kind=AgentEvent.Kind.DELETED,
            actor=actor,
            reason=reason,
            data={"source": "admin" if actor is not None else "agent"},
        )
        # A billing setup may have linked a customer since the request above read it.
        agent_deleted.send(sender=Agent, agent=agent, stripe_customer_id=locked.stripe_customer_id)
    agent.agent_name = agent.owner_identifier = tombstone
    agent.deleted_at = now
    return True
