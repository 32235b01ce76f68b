"""Keyed hashes and encryption for stored answers.

- ``key_hash``: HMAC-SHA256 of the Idempotency-Key under a key derived from
  SECRET_KEY: the table cannot be searched for a known Idempotency-Key without
  the server secret, nor read back to one.
- ``seal``/``open_sealed``: AES-256-GCM under a key derived with HKDF-SHA256 from
  the Idempotency-Key (input keying material) and SECRET_KEY (salt). A stolen
  table plus the server secret still lacks the Idempotency-Key, which only the
  client ever had, so an API key in a stored answer stays unreadable.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

NONCE_BYTES = 12
_INFO = b"lithtrix idempotency response v1"


def _secret(purpose: bytes) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), purpose, hashlib.sha256).digest()


def key_hash(idempotency_key: str) -> str:
    return hmac.new(
        _secret(b"lithtrix.idempotency.key-hash"), idempotency_key.encode("ascii"), hashlib.sha256
    ).hexdigest()


def fingerprint(*parts: bytes) -> str:
    """HMAC of the request's parts, each length-prefixed so no two requests collide."""
    mac = hmac.new(_secret(b"lithtrix.idempotency.fingerprint"), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def response_key(idempotency_key: str, *, secret: bytes | None = None) -> bytes:
    """The AES-256 key sealing one Idempotency-Key's answer."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=secret if secret is not None else _secret(b"lithtrix.idempotency.response"),
        info=_INFO,
    ).derive(idempotency_key.encode("ascii"))


def seal(idempotency_key: str, plaintext: bytes, *, associated_data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(response_key(idempotency_key)).encrypt(nonce, plaintext, associated_data)


class SealBroken(Exception):
    """The stored answer cannot be opened with this Idempotency-Key."""


def open_sealed(idempotency_key: str, sealed: bytes, *, associated_data: bytes) -> bytes:
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(response_key(idempotency_key)).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag:
        raise SealBroken() from None
