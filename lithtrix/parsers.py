"""JSON parsing with a size bound.

DRF's JSONParser reads the request stream directly, which bypasses Django's
DATA_UPLOAD_MAX_MEMORY_SIZE check; this parser enforces the bound itself, also
for chunked bodies that carry no Content-Length.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from lithtrix.errors import PayloadTooLargeError


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.LITHTRIX_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLargeError()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON.
    raise ValueError(f"{name} is not valid JSON")
