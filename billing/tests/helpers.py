"""Assertions and set-up shared by the metering tests."""

from __future__ import annotations

from accounts.models import Agent


def set_calls_total(agent: Agent, calls_total: int) -> None:
    Agent.objects.filter(pk=agent.pk).update(calls_total=calls_total)
    agent.calls_total = calls_total


def assert_envelope(response, status: int, error_code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert body["error_code"] == error_code
    assert isinstance(body["message"], str) and body["message"]
    return body


def rate_headers(response) -> tuple[int, int, int]:
    """(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset) as ints; fails if one is missing."""
    return (
        int(response["RateLimit-Limit"]),
        int(response["RateLimit-Remaining"]),
        int(response["RateLimit-Reset"]),
    )
