"""One JSON rendering for every answer, whichever code path draws it."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer

# DRF's renderer with DRF's settings (COMPACT_JSON, UNICODE_JSON): a plain Django view
# answers byte for byte as a viewset would.
_RENDERER = JSONRenderer()


def json_response(data: Any, *, status: int = 200) -> HttpResponse:
    return HttpResponse(_RENDERER.render(data), status=status, content_type=_RENDERER.media_type)
