"""Assertions and set-up shared by the metering tests."""

from __future__ import annotations

from testing.assertions import assert_envelope
from testing.factories import set_calls_total

__all__ = ["assert_envelope", "rate_headers", "set_calls_total"]


def rate_headers(response) -> tuple[int, int, int]:
    """(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset) as ints; fails if one is missing."""
    return (
        int(response["RateLimit-Limit"]),
        int(response["RateLimit-Remaining"]),
        int(response["RateLimit-Reset"]),
    )
