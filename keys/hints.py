"""Key -> agent hints: which agent (and tier) a key hash authenticated as, in this process.

A hint lets the metered path skip the key lookup: the metering statement itself
joins on the presented key's hash and counts the call only while that key still
authenticates (billing.metering.services.meter_call with ``hashed_key``). A hint
therefore never authenticates anything on its own: revocation and rotation take
effect on the next call, in every process, with or without a hint. Only a
successful lookup creates one; every refusal is decided by the full lookup.

Bounded (LITHTRIX_KEY_HINTS entries per process, oldest dropped first; 0 turns
hints off) and PostgreSQL only (the metering statement that re-checks the key).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from accounts.models import Agent


@dataclass(frozen=True, slots=True)
class KeyHint:
    agent_id: uuid.UUID
    tier: str


_hints: dict[str, KeyHint] = {}


def enabled() -> bool:
    return settings.LITHTRIX_KEY_HINTS > 0 and connection.vendor == "postgresql"


def get(hashed_key: str) -> KeyHint | None:
    return _hints.get(hashed_key)


def remember(hashed_key: str, agent: Agent) -> None:
    if len(_hints) >= settings.LITHTRIX_KEY_HINTS:
        # The oldest (dicts keep insertion order); another thread may have emptied it.
        with contextlib.suppress(StopIteration, KeyError):
            del _hints[next(iter(_hints))]
    _hints[hashed_key] = KeyHint(agent_id=agent.pk, tier=agent.tier)


def forget(hashed_key: str) -> None:
    _hints.pop(hashed_key, None)


def clear() -> None:
    _hints.clear()
