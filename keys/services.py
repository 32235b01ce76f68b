"""Writes to API keys. Each change and its KeyEvent audit row commit together."""

from __future__ import annotations

from collections.abc import Collection

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import Agent
from keys.crypto import generate_key
from keys.models import ApiKey, KeyEvent
from lithtrix.errors import InvalidApiKeyError


def _issue(
    *, agent: Agent, ip: str | None, actor: AbstractBaseUser | None, reason: str = ""
) -> str:
    generated = generate_key()
    api_key = ApiKey.objects.create(
        agent=agent, prefix=generated.prefix, hashed_key=generated.hashed_key
    )
    KeyEvent.objects.create(
        agent=agent, api_key=api_key, kind=KeyEvent.Kind.ISSUED, ip=ip, actor=actor, reason=reason
    )
    return generated.key


@transaction.atomic
def api_key_issue(
    *, agent: Agent, ip: str | None = None, actor: AbstractBaseUser | None = None, reason: str = ""
) -> str:
    """Issue a new key for ``agent`` and return it in clear (the only time it exists so)."""
    return _issue(agent=agent, ip=ip, actor=actor, reason=reason)


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, ip: str | None = None) -> str:
    """Revoke ``api_key`` and issue its replacement, atomically.

    The key row is locked, so of N concurrent rotations with the same key exactly
    one succeeds; the others find it revoked and get InvalidApiKeyError.
    """
    locked = (
        ApiKey.objects.select_for_update()
        .filter(pk=api_key.pk, revoked_at__isnull=True)
        .select_related("agent")
        .first()
    )
    if locked is None:
        raise InvalidApiKeyError()
    locked.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    KeyEvent.objects.create(agent=locked.agent, api_key=locked, kind=KeyEvent.Kind.ROTATED, ip=ip)
    return _issue(agent=locked.agent, ip=ip, actor=None)


@transaction.atomic
def api_key_revoke(
    *,
    api_key: ApiKey,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
    ip: str | None = None,
) -> bool:
    """Revoke ``api_key`` for good. Returns False when it was already revoked (idempotent)."""
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        KeyEvent.objects.create(
            agent_id=api_key.agent_id,
            api_key=api_key,
            kind=KeyEvent.Kind.REVOKED,
            actor=actor,
            reason=reason,
            ip=ip,
        )
    return bool(revoked)


@transaction.atomic
def api_key_reissue(
    *,
    agent: Agent,
    actor: AbstractBaseUser | None,
    reason: str = "",
    ip: str | None = None,
    expected_active_keys: Collection[int] | None = None,
) -> str | None:
    """Revoke every active key of ``agent`` and issue a new one (support, for a lost key).

    ``expected_active_keys``: the ids of the active keys the caller was shown. When
    the agent's active keys are no longer exactly those, nothing is done and None is
    returned: of two submissions of one support page (a double click, a reload of
    the new-key page), however close, the second does not revoke the key just
    handed out. The agent's row lock makes check-then-reissue one step, even for an
    agent with no active key left (FOR NO KEY UPDATE: key inserts elsewhere, which
    take a KEY SHARE lock on the agent, are not blocked by it).
    """
    Agent.objects.select_for_update(no_key=True).filter(pk=agent.pk).first()
    active = list(
        ApiKey.objects.select_for_update()
        .filter(agent=agent, revoked_at__isnull=True)
        .order_by("pk")
    )
    if expected_active_keys is not None and {k.pk for k in active} != set(expected_active_keys):
        return None
    for api_key in active:
        api_key_revoke(api_key=api_key, actor=actor, reason=reason, ip=ip)
    return _issue(agent=agent, ip=ip, actor=actor, reason=reason)
