"""JSON parsing with a size bound and a nesting bound.

DRF's JSONParser reads the request stream directly, which bypasses Django's
DATA_UPLOAD_MAX_MEMORY_SIZE check; this parser enforces the size bound itself
(chunked bodies are bounded before they get here, by BodySizeLimitMiddleware).
Nesting deeper than MAX_JSON_DEPTH is refused before parsing: Python's parser
would recurse on it until a RecursionError.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from lithtrix.errors import PayloadTooLargeError, ValidationError

# Deepest accepted nesting of arrays and objects (documented in README, "Requests").
MAX_JSON_DEPTH = 64

# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` opens more than ``limit`` arrays/objects inside each other."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot be deeper than the brackets it has
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.LITHTRIX_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLargeError()
        if not raw.strip():
            return {}
        if json_depth_exceeds(raw):
            raise ValidationError(
                "The JSON body is nested too deeply.",
                details={"body": [f"Arrays and objects nest at most {MAX_JSON_DEPTH} deep."]},
            )
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON.
    raise ValueError(f"{name} is not valid JSON")
