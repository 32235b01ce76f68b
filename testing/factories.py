"""Set-up shared by the test suites: state the services never write directly."""

from __future__ import annotations

from accounts.models import Agent


def set_calls_total(agent: Agent, calls_total: int) -> None:
    """Put ``agent`` at ``calls_total`` lifetime calls (in the database and on the object)."""
    Agent.objects.filter(pk=agent.pk).update(calls_total=calls_total)
    agent.calls_total = calls_total
