"""Webhook signing secrets: made here, shown once, kept encrypted at rest.

HMAC signing needs the secret itself, so it cannot be stored as a hash like an API
key; it is stored encrypted (Fernet) under a key derived from DJANGO_SECRET_KEY, so a
copy of the database alone signs nothing.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
# 24 random bytes: the Standard Webhooks secret is base64 of 24-64 bytes.
SECRET_BYTES = 24


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"lithtrix agent webhook secrets",
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def secret_seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def secret_open(sealed: str) -> str:
    return _fernet().decrypt(sealed.encode()).decode()
