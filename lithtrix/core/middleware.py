"""What every request passes before a view: body size, /v1 edges, probes, Host."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse

from lithtrix.core import probes
from lithtrix.core.exceptions import (
    InternalError,
    LengthRequiredError,
    PayloadTooLargeError,
    ValidationError,
)
from lithtrix.core.responses import (
    api_error_response,
    database_unavailable,
    is_database_outage,
    to_api_error,
)


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

        # /v1/authorize never reads a body, and a gateway may pass the client's length on.
        if request.path.startswith("/admin/") or request.path == "/v1/authorize":
            return self.get_response(request)
        limit = settings.LITHTRIX_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH")
        # Digits only: int() would also take "-5", "+2", " 2" and "1_0", and a
        # negative length reads as an empty body, which a view would then act on.
        if declared and not (declared.isascii() and declared.isdigit()):
            return api_error_response(ValidationError("Invalid Content-Length header."), request)
        length = int(declared or 0)
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
        return exception_response(request, exception)


def exception_response(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """ApiEdgeMiddleware's answer to an exception a view let out: the envelope on /v1
    (and a database outage's 503 on every path); None leaves it to Django."""
    if not _is_api_path(request.path) and not is_database_outage(exception):
        return None
    return api_exception_response(request, exception)


def api_exception_response(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The envelope for an exception an API view let out: 503 with Retry-After for a
    database outage; otherwise its API error, a 500 logged with its traceback once."""
    if is_database_outage(exception):
        return api_error_response(database_unavailable(exception), request)
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

        views = {
            "/healthz": probes.healthz,
            "/readyz": probes.readyz,
            "/metrics": probes.metrics_view,
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
