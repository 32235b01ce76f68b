"""Writes to API keys. Each change and its KeyEvent audit row commit together."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Agent
from events.services import event_record
from keys.crypto import DISPLAY_PREFIX_LENGTH, generate_key, hash_key, is_well_formed
from keys.models import ApiKey, KeyEvent
from keys.selectors import working_keys_condition
from lithtrix.core.exceptions import InvalidApiKeyError

# Longest overlap of a rotation, as Stripe's key roll: 7 days.
MAX_ROTATION_OVERLAP_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class EndedOverlap:
    """A key whose overlap a rotation ended early (LITHTRIX_MAX_WORKING_KEYS)."""

    prefix: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Rotation:
    api_key: str
    previous_key_expires_at: dt.datetime | None
    overlap_ended: list[EndedOverlap]

    def __repr__(self) -> str:
        return (
            f"Rotation(previous_key_expires_at={self.previous_key_expires_at!r}, "
            f"overlap_ended={self.overlap_ended!r})"
        )


def _issue(*, agent: Agent, ip: str | None, actor: User | None, reason: str = "") -> str:
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
    *, agent: Agent, ip: str | None = None, actor: User | None = None, reason: str = ""
) -> str:
    """Issue a new key for ``agent`` and return it in clear (the only time it exists so)."""
    return _issue(agent=agent, ip=ip, actor=actor, reason=reason)


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, overlap_seconds: int = 0, ip: str | None = None) -> Rotation:
    """Issue ``api_key``'s replacement; the old key dies now or after ``overlap_seconds``.

    Only the agent's current key rotates (not one already in its overlap window).
    The key row is locked, so of N concurrent rotations with the same key exactly
    one succeeds; the others find it replaced and get InvalidApiKeyError.

    At most LITHTRIX_MAX_WORKING_KEYS keys of the agent work afterwards: past it the
    oldest overlaps end now (revoked, each with its KeyEvent), in this transaction.

    The agent's row is locked first (FOR NO KEY UPDATE, as deletion and reissue do):
    one lock order for every key-changing action, so a rotation racing a deletion
    waits for it instead of deadlocking, and the deletion sees the key it issues.
    """
    Agent.objects.select_for_update(no_key=True).filter(pk=api_key.agent_id).first()
    now = timezone.now()
    locked = (
        ApiKey.objects.select_for_update()
        .filter(working_keys_condition(now), pk=api_key.pk, expires_at__isnull=True)
        .select_related("agent")
        .first()
    )
    if locked is None:
        raise InvalidApiKeyError()
    expires_at = None
    if overlap_seconds:
        expires_at = now + dt.timedelta(seconds=overlap_seconds)
        locked.expires_at = expires_at
        locked.save(update_fields=["expires_at"])
    else:
        locked.revoked_at = now
        locked.save(update_fields=["revoked_at"])
    KeyEvent.objects.create(
        agent=locked.agent,
        api_key=locked,
        kind=KeyEvent.Kind.ROTATED,
        ip=ip,
        reason=f"Works until {expires_at.isoformat()}" if expires_at else "",
    )
    new_key = _issue(agent=locked.agent, ip=ip, actor=None)
    ended = _end_oldest_overlaps(agent=locked.agent, now=now, ip=ip)
    if locked.pk in {key.pk for key in ended}:
        expires_at = None  # its overlap ended before it began
    return Rotation(
        api_key=new_key,
        previous_key_expires_at=expires_at,
        overlap_ended=[EndedOverlap(prefix=key.prefix, created_at=key.created_at) for key in ended],
    )


def _end_oldest_overlaps(*, agent: Agent, now: dt.datetime, ip: str | None) -> list[ApiKey]:
    """Revoke the agent's oldest overlapping keys until at most
    LITHTRIX_MAX_WORKING_KEYS work; the caller holds the agent's row lock."""
    working = list(
        ApiKey.objects.select_for_update()
        .filter(working_keys_condition(now), agent=agent)
        .order_by("created_at", "id")
    )
    excess = len(working) - settings.LITHTRIX_MAX_WORKING_KEYS
    if excess <= 0:
        return []
    ended = [key for key in working if key.expires_at is not None][:excess]
    ApiKey.objects.filter(pk__in=[key.pk for key in ended]).update(revoked_at=now)
    KeyEvent.objects.bulk_create(
        KeyEvent(
            agent=agent,
            api_key=key,
            kind=KeyEvent.Kind.REVOKED,
            ip=ip,
            reason=(
                f"Overlap ended early by a rotation: at most "
                f"{settings.LITHTRIX_MAX_WORKING_KEYS} keys work at once."
            ),
        )
        for key in ended
    )
    return ended


@transaction.atomic
def api_key_revoke(
    *,
    api_key: ApiKey,
    actor: User | None = None,
    reason: str = "",
    ip: str | None = None,
) -> bool:
    """Revoke ``api_key`` for good. Returns False when it was already revoked (idempotent).

    Revoked by staff (``actor``): the owner is told (key.revoked_by_support), in the
    same transaction.
    """
    revoked = _revoke_where(
        Q(revoked_at__isnull=True), api_key=api_key, actor=actor, reason=reason, ip=ip
    )
    if revoked and actor is not None:
        event_record(
            agent=api_key.agent, type="key.revoked_by_support", data={"prefix": api_key.prefix}
        )
    return revoked


def _revoke_where(
    condition: Q, *, api_key: ApiKey, actor: User | None, reason: str, ip: str | None
) -> bool:
    """Revoke ``api_key`` if it matches ``condition``, with its KeyEvent; True if it did."""
    revoked = ApiKey.objects.filter(condition, pk=api_key.pk).update(revoked_at=timezone.now())
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
    actor: User | None,
    reason: str = "",
    ip: str | None = None,
    expected_working_keys: Collection[int] | None = None,
) -> str | None:
    """Revoke every working key of ``agent`` and issue a new one (support, for a lost key).

    The owner is told (key.reissued_by_support, one event for the whole reissue).

    ``expected_working_keys``: the ids of the working keys the caller was shown. When
    the agent's working keys are no longer exactly those, nothing is done and None is
    returned: of two submissions of one support page (a double click, a reload of
    the new-key page), however close, the second does not revoke the key just
    handed out. The agent's row lock makes check-then-reissue one step, even for an
    agent with no working key left (FOR NO KEY UPDATE: key inserts elsewhere, which
    take a KEY SHARE lock on the agent, are not blocked by it).
    """
    Agent.objects.select_for_update(no_key=True).filter(pk=agent.pk).first()
    unrevoked = list(
        ApiKey.objects.select_for_update()
        .filter(agent=agent, revoked_at__isnull=True)
        .order_by("pk")
    )
    shown = expected_working_keys
    if shown is not None and {k.pk for k in unrevoked} != set(shown):
        return None
    for api_key in unrevoked:
        _revoke_where(
            Q(revoked_at__isnull=True), api_key=api_key, actor=actor, reason=reason, ip=ip
        )
    key = _issue(agent=agent, ip=ip, actor=actor, reason=reason)
    event_record(
        agent=agent,
        type="key.reissued_by_support",
        data={"prefix": key[:DISPLAY_PREFIX_LENGTH], "revoked": [k.prefix for k in unrevoked]},
    )
    return key


@transaction.atomic
def api_key_revoke_working(
    *,
    api_key: ApiKey,
    actor: User | None = None,
    reason: str = "",
    ip: str | None = None,
) -> bool:
    """Revoke ``api_key`` if it still works (the agent's own revoke, a leak report).

    False when it had already stopped working: revoked, or past its overlap expiry.
    """
    return _revoke_where(
        working_keys_condition(timezone.now()), api_key=api_key, actor=actor, reason=reason, ip=ip
    )


def api_keys_revoke_all(
    *, agent: Agent, actor: User | None, reason: str, ip: str | None = None
) -> int:
    """Revoke every key of ``agent`` that still works, each with its KeyEvent.

    Runs inside the caller's transaction (agent deletion); returns how many.
    """
    now = timezone.now()
    working = list(
        ApiKey.objects.select_for_update().filter(working_keys_condition(now), agent=agent)
    )
    ApiKey.objects.filter(pk__in=[key.pk for key in working]).update(revoked_at=now)
    KeyEvent.objects.bulk_create(
        KeyEvent(
            agent=agent,
            api_key=key,
            kind=KeyEvent.Kind.REVOKED,
            actor=actor,
            reason=reason,
            ip=ip,
        )
        for key in working
    )
    return len(working)


@dataclass(frozen=True)
class LeakReport:
    token: str
    token_type: str
    url: str
    source: str

    def __repr__(self) -> str:
        return f"LeakReport(url={self.url!r})"


def _leak_reason(report: LeakReport) -> str:
    source = f" ({report.source})" if report.source else ""
    url = f": {report.url}" if report.url else ""
    return f"Reported leaked by secret scanning{source}{url}"


def api_keys_report_leaked(*, reports: list[LeakReport], ip: str | None = None) -> list[dict]:
    """Revoke each reported token that is one of our working keys; label every report.

    ``true_positive``: the token is a key this service issued (revoked now if it
    still worked); ``false_positive``: it is not. Each revocation is its own
    transaction with a KeyEvent naming where the key was found and a key.leaked event
    for the owner (none when the key had already stopped working).
    """
    results = []
    for report in reports:
        token_hash = hash_key(report.token)
        api_key = (
            ApiKey.objects.filter(hashed_key=token_hash).first()
            if is_well_formed(report.token)
            else None
        )
        if api_key is not None:
            with transaction.atomic():
                revoked = api_key_revoke_working(
                    api_key=api_key,
                    reason=_leak_reason(report),
                    ip=ip,
                )
                if revoked:
                    # GitHub's step 5: the user is told of the revocation.
                    event_record(
                        agent=api_key.agent,
                        type="key.leaked",
                        data={"prefix": api_key.prefix, "url": report.url, "source": report.source},
                    )
        results.append(
            {
                "token_hash": token_hash,
                "token_type": report.token_type,
                "label": "true_positive" if api_key is not None else "false_positive",
            }
        )
    return results
