"""Claiming an Idempotency-Key, storing its answer, replaying it, purging old ones.

Stripe's semantics: the first request with a key runs; the same request again
gets the same answer back; a different request under the key is refused (422);
a request arriving while the first still runs is refused (409). Answers with a
5xx, 429 or 401 status are not kept, so a retry runs again.

Keys live in a namespace, the caller's (an agent, or for register the client
address): one caller's key never binds another's, and each caller holds at most
LITHTRIX_IDEMPOTENCY_MAX_KEYS keys at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from idempotency import crypto
from idempotency.models import IdempotencyRecord
from lithtrix.core.exceptions import (
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    RateLimitExceededError,
)

# How long a claim by a request that never finished (its process died) blocks the
# key: longer than any request may run (gunicorn's timeout, Stripe's timeouts).
CLAIM_SECONDS = 120
# Headers of an answer that are part of what it says, hence replayed with it.
KEPT_HEADERS = ("Content-Type", "WWW-Authenticate", "Location")
# Records stored before keys had a namespace: nobody claims in it, and a record
# there is only replayed to the very request it was made for (same fingerprint).
LEGACY_NAMESPACE = ""


def agent_namespace(agent_id: object) -> str:
    # Any primary key (the authenticated caller's); agents have UUIDs.
    return f"agent:{agent_id}"


def address_namespace(ip: str | None) -> str:
    return f"ip:{ip or 'unknown'}"


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    headers: dict[str, str]
    # The answer asked for a retry later (Retry-After): a refusal before the action ran.
    retry_later: bool = False


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: it runs, then completes or releases ``record``."""

    record: IdempotencyRecord


@dataclass(frozen=True)
class Replay:
    """The key's request already finished: this is its answer."""

    answer: StoredAnswer


Claim = Claimed | Replay


def ttl() -> dt.timedelta:
    return dt.timedelta(hours=settings.LITHTRIX_IDEMPOTENCY_TTL_HOURS)


def idempotency_claim(*, namespace: str, idempotency_key: str, fingerprint: str) -> Claim:
    """Claim ``idempotency_key`` in ``namespace`` for a request, or find its answer.

    The claim is one INSERT on a unique (namespace, key), committed before the
    request runs: of two identical requests at once exactly one inserts; the other
    sees the claim and gets IdempotencyKeyInUseError (or, once the first finished,
    its answer). Raises IdempotencyKeyReusedError when the key was used for another
    request, RateLimitExceededError (429) when the namespace holds
    LITHTRIX_IDEMPOTENCY_MAX_KEYS unexpired keys (counted under a lock, so
    concurrent claims never exceed it).
    """
    key_hash = crypto.key_hash(idempotency_key)
    for _attempt in range(3):
        now = timezone.now()
        existing = _existing(namespace, key_hash, fingerprint)
        if existing is not None:
            if existing.expires_at <= now:
                # Past its TTL (or a claim whose request died): as if never used.
                IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
                continue
            return Replay(answer=_answer_of(existing, idempotency_key, fingerprint))
        try:
            with transaction.atomic():
                _lock_namespace(namespace)
                _check_bound(namespace, now)
                record = IdempotencyRecord.objects.create(
                    namespace=namespace,
                    key_hash=key_hash,
                    fingerprint=fingerprint,
                    created_at=now,
                    expires_at=now + dt.timedelta(seconds=CLAIM_SECONDS),
                )
            return Claimed(record=record)
        except IntegrityError:
            continue  # claimed in between: look again
    raise IdempotencyKeyInUseError()


def idempotency_replay(
    *, namespace: str, idempotency_key: str, fingerprint: str
) -> StoredAnswer | None:
    """The kept answer of exactly this request (same fingerprint), claiming nothing.

    For a retry whose first attempt killed its own credential (a rotation, a
    revocation, a deletion): None when there is no such answer, so the retry is
    refused as any other request with that credential.
    """
    key_hash = crypto.key_hash(idempotency_key)
    existing = _existing(namespace, key_hash, fingerprint)
    if (
        existing is None
        or existing.fingerprint != fingerprint
        or existing.expires_at <= timezone.now()
    ):
        return None
    return _answer_of(existing, idempotency_key, fingerprint)


def _existing(namespace: str, key_hash: str, fingerprint: str) -> IdempotencyRecord | None:
    """The namespace's record of the key, else a legacy record of this very request."""
    found = {
        record.namespace: record
        for record in IdempotencyRecord.objects.filter(
            key_hash=key_hash, namespace__in=(namespace, LEGACY_NAMESPACE)
        )
    }
    if namespace in found:
        return found[namespace]
    legacy = found.get(LEGACY_NAMESPACE)
    return legacy if legacy is not None and legacy.fingerprint == fingerprint else None


def _answer_of(record: IdempotencyRecord, idempotency_key: str, fingerprint: str) -> StoredAnswer:
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReusedError()
    if record.state == IdempotencyRecord.State.IN_PROGRESS:
        raise IdempotencyKeyInUseError()
    return _open(idempotency_key, record)


def _lock_namespace(namespace: str) -> None:
    """Serialise claims in ``namespace`` until the transaction ends (PostgreSQL).

    SQLite lets one writer at a time anyway (development only).
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"lithtrix.idempotency:{namespace}".encode(), digest_size=8)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)",
            [int.from_bytes(digest.digest(), "big", signed=True)],
        )


def _check_bound(namespace: str, now: dt.datetime) -> None:
    """Drop the namespace's expired records; refuse a new key past the bound."""
    IdempotencyRecord.objects.filter(namespace=namespace, expires_at__lte=now).delete()
    limit = settings.LITHTRIX_IDEMPOTENCY_MAX_KEYS
    live = IdempotencyRecord.objects.filter(namespace=namespace)
    if live.count() < limit:
        return
    oldest = live.aggregate(oldest=Min("expires_at"))["oldest"]
    wait = str(max(1, math.ceil((oldest - now).total_seconds())) if oldest else 1)
    raise RateLimitExceededError(
        f"This caller already has {limit} Idempotency-Keys whose answers are kept. "
        "Retry after Retry-After seconds (when the oldest expires), or send the "
        "request without an Idempotency-Key.",
        # The limit that refused, like every other 429.
        headers={
            "Retry-After": wait,
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": wait,
        },
    )


def idempotency_complete(
    *, record: IdempotencyRecord, idempotency_key: str, answer: StoredAnswer
) -> None:
    """Keep ``answer`` (sealed) for replay, or release the key when it is not kept.

    Not kept: 5xx, 429 and any answer with Retry-After, such as 409
    BILLING_IN_PROGRESS (a retry may succeed: as in Stripe's semantics, a request
    refused for a concurrent one never ran), and 401 (the credential stopped working
    while the request ran: the answer is about it, not the request).
    """
    if answer.status >= 500 or answer.status in (401, 429) or answer.retry_later:
        idempotency_release(record=record)
        return
    plaintext = json.dumps(
        {"headers": answer.headers, "body": base64.b64encode(answer.body).decode("ascii")}
    ).encode()
    now = timezone.now()
    IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS
    ).update(
        state=IdempotencyRecord.State.COMPLETED,
        status_code=answer.status,
        response=crypto.seal(
            idempotency_key, plaintext, associated_data=record.key_hash.encode("ascii")
        ),
        expires_at=now + ttl(),
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a claim whose request failed, so a retry runs again."""
    IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS
    ).delete()


def idempotency_purge(*, now: dt.datetime | None = None) -> int:
    """Delete every record past its expiry; returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def _open(idempotency_key: str, record: IdempotencyRecord) -> StoredAnswer:
    if record.response is None or record.status_code is None:
        raise ValueError(f"Idempotency record {record.pk} is completed without its answer.")
    plaintext = crypto.open_sealed(
        idempotency_key, bytes(record.response), associated_data=record.key_hash.encode("ascii")
    )
    stored = json.loads(plaintext)
    return StoredAnswer(
        status=record.status_code,
        body=base64.b64decode(stored["body"]),
        headers=stored["headers"],
    )
