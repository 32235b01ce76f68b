"""Request id on every request, answer and log line; one access log line per request."""

from __future__ import annotations

import contextvars
import io
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Protocol, cast

from django.core.handlers.wsgi import WSGIRequest
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
    from accounts.models import Agent

    user = request.__dict__.get("user")
    return str(user.id) if type(user) is Agent else None


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


class BodySizeLimitMiddleware:
    """413 for any request whose body exceeds LITHTRIX_MAX_BODY_BYTES.

    Checked before any view runs, so endpoints that never read their body refuse
    oversized uploads too. A chunked body (Transfer-Encoding: chunked, no
    Content-Length) is read here, up to the limit, when the server decodes chunked
    input (gunicorn does: wsgi.input_terminated); a server that cannot (the dev
    server) answers 411 LENGTH_REQUIRED rather than reading it as empty.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        from lithtrix.errors import (
            LengthRequiredError,
            PayloadTooLargeError,
            ValidationError,
            api_error_response,
        )

        # /v1/authorize never reads a body, and a gateway may pass the client's length on.
        if request.path.startswith("/admin/") or request.path == "/v1/authorize":
            return self.get_response(request)
        limit = settings.LITHTRIX_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH")
        try:
            length = int(declared or 0)
        except ValueError:
            return api_error_response(ValidationError("Invalid Content-Length header."), request)
        if length > limit:
            return api_error_response(PayloadTooLargeError(), request)
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not declared:
            environ = request.environ if isinstance(request, WSGIRequest) else {}
            if not environ.get("wsgi.input_terminated"):
                return api_error_response(LengthRequiredError(), request)
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return api_error_response(PayloadTooLargeError(), request)
            # From here on the body reads like one sent with its length.
            request._stream = io.BytesIO(body)
            request.META["CONTENT_LENGTH"] = str(len(body))
        return self.get_response(request)


def _is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class ApiEdgeMiddleware:
    """What every /v1 answer shares, whoever drew it.

    - ``Cache-Control: no-store``: answers are per agent, and some carry a key.
    - An exception a plain (non-DRF) view lets out becomes the envelope, never
      Django's HTML debug or error page: a database outage is 503 with
      Retry-After, logged once per incident; anything else a 500 with its traceback
      logged once. A database outage gets the 503 on every path (the admin too).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if _is_api_path(request.path):
            response["Cache-Control"] = "no-store"
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from lithtrix.errors import (
            InternalError,
            api_error_response,
            database_unavailable,
            is_database_outage,
            to_api_error,
        )

        if is_database_outage(exception):
            return api_error_response(database_unavailable(exception), request)
        if not _is_api_path(request.path):
            return None
        error = to_api_error(exception)
        if isinstance(error, InternalError):
            logging.getLogger("lithtrix.errors").error(
                "Unhandled error in %s %s", request.method, request.path, exc_info=exception
            )
        return api_error_response(error, request)


# Answered before the Host header is checked: load balancers and orchestrators
# probe by IP address, and a scraper may too (/metrics guards itself).
_PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics whatever the Host header says."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path not in _PROBE_PATHS:
            return self.get_response(request)
        from lithtrix import health, metrics

        views = {
            "/healthz": health.healthz,
            "/readyz": health.readyz,
            "/metrics": metrics.metrics_view,
        }
        return views[request.path](request)


security_logger = logging.getLogger("django.security.DisallowedHost")


class HostValidationMiddleware:
    """A Host not in ALLOWED_HOSTS: 400 envelope and one WARNING line, no traceback.

    Django would raise DisallowedHost from the first get_host() (CommonMiddleware),
    log it at ERROR with a traceback, and answer with its HTML page under debug.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.core.exceptions import DisallowedHost

        from lithtrix.errors import ValidationError, api_error_response

        try:
            request.get_host()
        except DisallowedHost:
            host = request.META.get("HTTP_X_FORWARDED_HOST") or request.META.get("HTTP_HOST", "")
            security_logger.warning("Disallowed Host header: %r", host[:100])
            return api_error_response(
                ValidationError("The Host header names a host this service does not serve."),
                request,
            )
        return self.get_response(request)
