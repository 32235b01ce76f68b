"""Request id on every request, answer and log line."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# A caller-supplied id is kept only when it is short and harmless in a log line.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current_request_id() -> str:
    return _request_id.get()


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-Id"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class BodySizeLimitMiddleware:
    """413 for any request whose declared body exceeds LITHTRIX_MAX_BODY_BYTES.

    Checked before any view runs, so endpoints that never read their body refuse
    oversized uploads too. Bodies without a Content-Length are bounded by the parser.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        from lithtrix.errors import PayloadTooLargeError, ValidationError, api_error_response

        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return api_error_response(ValidationError("Invalid Content-Length header."), request)
        # /v1/authorize never reads a body, and a gateway may pass the client's length on.
        if (
            length > settings.LITHTRIX_MAX_BODY_BYTES
            and not request.path.startswith("/admin/")
            and request.path != "/v1/authorize"
        ):
            return api_error_response(PayloadTooLargeError(), request)
        return self.get_response(request)
