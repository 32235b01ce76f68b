"""Assertions and set-up shared by the metering tests."""

from __future__ import annotations

from accounts.models import Agent
from testing.assertions import assert_envelope

__all__ = ["assert_envelope", "rate_headers", "set_calls_total"]


def set_calls_total(agent: Agent, calls_total: int) -> None:
    Agent.objects.filter(pk=agent.pk).update(calls_total=calls_total)
    agent.calls_total = calls_total


def rate_headers(response) -> tuple[int, int, int]:
    """(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset) as ints; fails if one is missing."""
    return (
        int(response["RateLimit-Limit"]),
        int(response["RateLimit-Remaining"]),
        int(response["RateLimit-Reset"]),
    )
