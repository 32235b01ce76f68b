"""Writes to agents."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from accounts.models import Agent, AgentEvent
from keys.services import api_key_issue
from lithtrix.errors import AgentAlreadyExistsError


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
