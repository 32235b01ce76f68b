"""API key format, generation and hashing.

A key is ``ltx_`` + 30 random base62 characters (~178 bits from ``secrets``) + a
6-character base62 CRC32 checksum of those 30 characters, as GitHub's tokens do:
a mistyped or truncated key is refused without a database query.

Keys carry far more entropy than a password, so one SHA-256 is enough to make the
stored hash useless to whoever reads the table (no salt or key stretching needed,
and lookups stay a single indexed equality).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

KEY_PREFIX = "ltx_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
# Characters of the key shown to staff so they can tell keys apart ("ltx_" + 8).
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8

_KEY_SHAPE = re.compile(
    rf"^{KEY_PREFIX}([0-9A-Za-z]{{{RANDOM_LENGTH}}})([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})$"
)


@dataclass(frozen=True)
class GeneratedKey:
    """A new key: ``key`` goes to the caller once; only the other two are stored."""

    key: str
    prefix: str
    hashed_key: str

    def __repr__(self) -> str:  # never let the secret reach a log or traceback
        return f"GeneratedKey(prefix={self.prefix!r})"


def _base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars)).rjust(width, ALPHABET[0])


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> GeneratedKey:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    key = f"{KEY_PREFIX}{random_part}{_checksum(random_part)}"
    return GeneratedKey(key=key, prefix=key[:DISPLAY_PREFIX_LENGTH], hashed_key=hash_key(key))


def is_well_formed(key: str) -> bool:
    """True when ``key`` has the ltx_ shape and a valid checksum. Touches no database."""
    match = _KEY_SHAPE.match(key)
    if match is None:
        return False
    random_part, checksum = match.groups()
    return hmac.compare_digest(_checksum(random_part), checksum)
