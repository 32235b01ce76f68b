"""Reads about agents. (Usage reads, which need billing's DailyUsage, are in
billing.metering.selectors.)"""

from __future__ import annotations

from accounts.models import Agent


def agent_profile(agent: Agent) -> dict[str, str]:
    """GET /v1/me's body (AgentProfileSerializer documents it).

    Built directly: /v1/me answers on every call, and instantiating a DRF
    serializer deep-copies its fields each time (a tenth of the request's CPU).
    """
    return {
        "agent_id": str(agent.id),
        "agent_name": agent.agent_name,
        "owner_identifier": agent.owner_identifier,
        "tier": agent.tier,
    }
