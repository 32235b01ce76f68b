"""Claiming an Idempotency-Key, storing its answer, replaying it, purging old ones.

Stripe's semantics: the first request with a key runs; the same request again
gets the same answer back; a different request under the key is refused (422);
a request arriving while the first still runs is refused (409). Answers with a
5xx or 429 status are not kept, so a retry runs again.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from idempotency import crypto
from idempotency.models import IdempotencyRecord
from lithtrix.errors import IdempotencyKeyInUseError, IdempotencyKeyReusedError

# How long a claim by a request that never finished (its process died) blocks the
# key: longer than any request may run (gunicorn's timeout, Stripe's timeouts).
CLAIM_SECONDS = 120
# Headers of an answer that are part of what it says, hence replayed with it.
KEPT_HEADERS = ("Content-Type", "WWW-Authenticate", "Location")


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


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


def idempotency_claim(*, idempotency_key: str, fingerprint: str) -> Claim:
    """Claim ``idempotency_key`` for a request, or find the answer it already had.

    The claim is one INSERT on a unique column, committed before the request runs:
    of two identical requests at once exactly one inserts; the other sees the
    claim and gets IdempotencyKeyInUseError (or, once the first finished, its answer).
    Raises IdempotencyKeyReusedError when the key was used for another request.
    """
    key_hash = crypto.key_hash(idempotency_key)
    for _attempt in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    key_hash=key_hash,
                    fingerprint=fingerprint,
                    created_at=now,
                    expires_at=now + dt.timedelta(seconds=CLAIM_SECONDS),
                )
            return Claimed(record=record)
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(key_hash=key_hash).first()
        if existing is None:
            continue  # released (a 5xx) in between: claim it again
        if existing.expires_at <= now:
            # Past its TTL (or a claim whose request died): as if never used.
            IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError()
        if existing.state == IdempotencyRecord.State.IN_PROGRESS:
            raise IdempotencyKeyInUseError()
        return Replay(answer=_open(idempotency_key, existing))
    raise IdempotencyKeyInUseError()


def idempotency_complete(
    *, record: IdempotencyRecord, idempotency_key: str, answer: StoredAnswer
) -> None:
    """Keep ``answer`` (sealed) for replay, or release the key when it is not kept."""
    if answer.status >= 500 or answer.status == 429:
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
