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
from itertools import accumulate
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from lithtrix.core.exceptions import (
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)

# Deepest accepted nesting of arrays and objects (documented in README, "Requests").
MAX_JSON_DEPTH = 64

# Everything but the brackets that are structure: each string, closed or not, and
# every other run of text. An unterminated string runs to the end, so the scan
# never restarts inside one: linear, where a restart at each quote was quadratic.
_NOT_STRUCTURE = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[^"\[\]{}]++', re.DOTALL)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_text(raw: bytes) -> str:
    """The text json.loads reads from ``raw`` (UTF-8, -16 or -32: it detects which)."""
    return raw.decode(json.detect_encoding(raw), "surrogatepass")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text``, in time linear in its length."""
    structure = _NOT_STRUCTURE.sub("", text)
    return max(0, max(accumulate(map(_STEP.__getitem__, structure)), default=0))


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` opens more than ``limit`` arrays/objects inside each other."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot be deeper than the brackets it has
    try:
        text = json_text(raw)
    except UnicodeDecodeError:
        return False  # not text: json.loads refuses it before any nesting
    return json_depth(text) > limit


def json_loads_bounded(raw: bytes) -> Any:
    """``raw`` parsed as JSON, or the envelope's 400: too deep, or not JSON."""
    if json_depth_exceeds(raw):
        raise ValidationError(
            "The JSON body is nested too deeply.",
            details={"body": [f"Arrays and objects nest at most {MAX_JSON_DEPTH} deep."]},
        )
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.LITHTRIX_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLargeError()
        if not raw.strip():
            return {}
        return json_loads_bounded(raw)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON.
    raise ValueError(f"{name} is not valid JSON")


def require_no_body(request: Any) -> None:
    """For an action documented as taking no body (a DRF Request): none, or a JSON
    object, whose fields are ignored as unknown fields are everywhere. Anything else
    is refused before the action runs, as any endpoint refuses it: a body that is
    malformed, too deep or too large 400/413, of another media type 415, and JSON
    that is not an object 400. A client that sends one has a bug; acting on it
    anyway would hide that."""
    if not request.content_type and request.stream is not None:
        raise UnsupportedMediaTypeError()  # DRF would read an untyped body as {}
    data = request.data  # parsed by the view's parsers, with their bounds
    if not isinstance(data, dict):
        raise ValidationError("This endpoint takes no body; if one is sent, a JSON object.")
