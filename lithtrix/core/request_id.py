"""Request id on every request, answer and log line; one access log line per request."""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Protocol, cast

from django.http import HttpRequest, HttpResponse

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


# A caller-supplied id is kept only when it is short and harmless in a log line.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


access_logger = logging.getLogger("lithtrix.access")


class _WithRequestId(Protocol):
    request_id: str


def request_id_of(request: HttpRequest) -> str | None:
    """The id RequestIdMiddleware gave this request (None if it did not run)."""
    request_id = getattr(request, "request_id", None)
    return request_id if isinstance(request_id, str) else None


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        cast(_WithRequestId, request).request_id = request_id
        token = _request_id.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-Id"] = request_id
            _log_access(request, response, time.perf_counter() - started)
        finally:
            _request_id.reset(token)
        return response


def _agent_id(request: HttpRequest) -> str | None:
    """The authenticated agent's id, when the request was authenticated with a key.

    DRF stores the Agent on the Django request; code outside DRF may set
    ``request.agent_id``. Django's lazy session user is never evaluated here.
    """
    agent_id = getattr(request, "agent_id", None)
    if agent_id is not None:
        return str(agent_id)
    user = request.__dict__.get("user")
    # An agent is the one kind of user with a tier (the base imports no app's model).
    if user is None or getattr(user, "tier", None) is None:
        return None
    return str(user.pk)


def _log_access(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    # Path only: query strings and headers (Authorization) never reach the access log.
    if not access_logger.isEnabledFor(logging.INFO):
        return
    access_logger.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
            "agent_id": _agent_id(request),
        },
    )


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True
