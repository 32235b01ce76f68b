"""Structured JSON log lines, with secrets scrubbed out.

One JSON object per line, each with the request id the RequestIdLogFilter puts on
the record. Whatever reaches a line - message, arguments, traceback - goes through
``scrub`` first: API keys, Authorization values, Stripe secrets, card numbers and
passwords in URLs never reach the log, even when a bug tries to log them.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_REDACTED = "[redacted]"

# Each pattern with its clues: lower-case strings one of which every match contains,
# once lower-cased. On ASCII text a pattern runs only where a clue appears: every
# request writes a line, and re tries a pattern that starts with \b at every
# position of it. (On other text, where case-insensitive matching goes beyond
# str.lower(), every pattern runs.)
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [
    # ltx_ API keys, whole or truncated.
    (re.compile(r"ltx_[0-9A-Za-z]+"), f"ltx_{_REDACTED}", ("ltx_",)),
    # Authorization header values (Bearer, Basic, Token...).
    (
        re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=_-]+"),
        rf"\1 {_REDACTED}",
        ("bearer", "basic", "token"),
    ),
    # Stripe secret/restricted keys and webhook secrets.
    (
        re.compile(r"\b(sk|rk)_(test|live)_[0-9A-Za-z]+"),
        rf"\1_\2_{_REDACTED}",
        ("k_test_", "k_live_"),
    ),
    (re.compile(r"\bwhsec_[0-9A-Za-z]+"), f"whsec_{_REDACTED}", ("whsec_",)),
    # Passwords in URLs (postgres://user:secret@host, redis://:secret@host).
    (re.compile(r"(://[^:/@\s]*):[^@/\s]+@"), rf"\1:{_REDACTED}@", ("://",)),
]


# Card numbers: 13-19 digits in a row, or groups of four split by spaces or dashes;
# replaced when they pass the Luhn check (so ids and timestamps are left alone).
_CARD_NUMBER = re.compile(r"\b(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7})\b")
# Its clues, in ASCII text with every digit made 0: 13 digits in a row, or three
# groups of four split the same way.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_CARD_CLUES = (b"0" * 13, b"0000 0000 0000", b"0000-0000-0000")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _redact_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[card redacted]" if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group(0)


def scrub_with_every_pattern(text: str) -> str:
    """``text`` with every secret-looking substring replaced, every pattern run."""
    for pattern, replacement, _clues in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return _CARD_NUMBER.sub(_redact_card, text)


def scrub(text: str) -> str:
    """``text`` with every secret-looking substring replaced."""
    if not text.isascii():
        return scrub_with_every_pattern(text)
    # Replacements are ASCII and add no clue of a later pattern: one lower() holds.
    lowered = text.lower()
    for pattern, replacement, clues in _SECRET_PATTERNS:
        if any(clue in lowered for clue in clues):
            text = pattern.sub(replacement, text)
    digits = text.encode("ascii").translate(_DIGITS_AS_ZERO)
    if any(clue in digits for clue in _CARD_CLUES):
        text = _CARD_NUMBER.sub(_redact_card, text)
    return text


# Attributes every LogRecord has; anything else was passed with ``extra=`` and is
# emitted as its own JSON field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "pid", "request_id", "message", ...extra, ["exc"]}``.

    ``pid`` tells which server process wrote the line.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


class PlainFormatter(logging.Formatter):
    """Human-readable lines for local development, scrubbed like the JSON ones."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
