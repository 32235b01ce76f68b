"""GitHub's secret-scanning partner protocol: verifying a report's signature.

GitHub signs each report's raw body with ECDSA P-256 / SHA-256 and names the key
in ``Github-Public-Key-Identifier``; the signature (base64 DER) is in
``Github-Public-Key-Signature``. Its public keys are published as
``{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}`` at
LITHTRIX_SECRET_SCANNING_KEYS_URL, or read from LITHTRIX_SECRET_SCANNING_KEYS_FILE.

The list is cached per process for an hour; an identifier not in it refetches
the list at most once every REFRESH_INTERVAL seconds (a flood of reports with
made-up identifiers must not become a flood of requests to GitHub).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import urllib.request
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

from lithtrix.core.exceptions import ServiceUnavailableError, ValidationError

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5
CACHE_SECONDS = 3600
REFRESH_INTERVAL = 300


class _KeyCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self.fetched_at: float | None = None  # monotonic time of the last fetch attempt

    def clear(self) -> None:
        with self.lock:
            self.keys, self.fetched_at = {}, None


_cache = _KeyCache()


def _load_document() -> bytes:
    path = settings.LITHTRIX_SECRET_SCANNING_KEYS_FILE
    if path:
        return Path(path).read_bytes()
    request = urllib.request.Request(  # noqa: S310 - an https URL from settings
        settings.LITHTRIX_SECRET_SCANNING_KEYS_URL,
        headers={"Accept": "application/json", "User-Agent": "lithtrix-secret-scanning"},
    )
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as answer:  # noqa: S310
        return answer.read(1024 * 1024)


def _parse(document: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    keys = {}
    for entry in json.loads(document)["public_keys"]:
        key = serialization.load_pem_public_key(entry["key"].encode("ascii"))
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[str(entry["key_identifier"])] = key
    return keys


def _refresh() -> None:
    """Reload the list; keeps the old one (and says so) when the source fails."""
    _cache.fetched_at = time.monotonic()
    try:
        _cache.keys = _parse(_load_document())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("Secret-scanning public keys unavailable: %s", type(exc).__name__)
        if not _cache.keys:
            raise ServiceUnavailableError(
                "The secret-scanning public keys cannot be fetched; retry later.",
                headers={"Retry-After": "60"},
            ) from None


def public_key(identifier: str) -> ec.EllipticCurvePublicKey | None:
    with _cache.lock:
        now = time.monotonic()
        stale = _cache.fetched_at is None or now - _cache.fetched_at > CACHE_SECONDS
        unknown = identifier not in _cache.keys and (
            _cache.fetched_at is None or now - _cache.fetched_at > REFRESH_INTERVAL
        )
        if stale or unknown:
            _refresh()
        if not _cache.keys:
            raise ServiceUnavailableError(
                "The secret-scanning public keys are unavailable; retry later.",
                headers={"Retry-After": "60"},
            )
        return _cache.keys.get(identifier)


def verify_report(*, body: bytes, identifier: str, signature: str) -> None:
    """Raises ValidationError unless ``body`` is signed by GitHub's key ``identifier``."""
    if not identifier or not signature:
        raise ValidationError(
            "Missing Github-Public-Key-Identifier or Github-Public-Key-Signature header."
        )
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("The signature is not valid base64.") from None
    key = public_key(identifier)
    if key is None:
        raise ValidationError("Unknown Github-Public-Key-Identifier.")
    try:
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise ValidationError("The signature does not match the body.") from None
