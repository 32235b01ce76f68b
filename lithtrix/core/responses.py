"""The one handler that turns every error into the envelope, and the envelope as
a plain Django response.

Views and services only raise (lithtrix.core.exceptions); nothing else builds an
error body by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from lithtrix.core import outages
from lithtrix.core.exceptions import (
    ApiError,
    InternalError,
    InvalidApiKeyError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitExceededError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from lithtrix.core.request_id import request_id_of

# DRF's renderer with DRF's settings (COMPACT_JSON, UNICODE_JSON): a plain Django view
# answers byte for byte as a viewset would.
_RENDERER = JSONRenderer()


def json_response(data: Any, *, status: int = 200) -> HttpResponse:
    return HttpResponse(_RENDERER.render(data), status=status, content_type=_RENDERER.media_type)


logger = logging.getLogger("lithtrix.errors")


def is_database_outage(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (not a bad query)."""
    return isinstance(exc, DatabaseOperationalError | DatabaseInterfaceError)


def database_unavailable(exc: BaseException) -> ServiceUnavailableError:
    """The 503 for a database outage, reported once per incident (no traceback)."""
    outages.report_failure("database", exc, action="requests answer 503")
    return ServiceUnavailableError("The database is unavailable; retry later.")


def _flatten_details(detail: Any) -> dict[str, list[str]]:
    """DRF's nested error detail -> {"field": ["message", ...]} (dotted names for nesting)."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for field, value in detail.items():
            name = "non_field_errors" if field == "non_field_errors" else str(field)
            for sub, messages in _flatten_details(value).items():
                key = name if sub == "non_field_errors" else f"{name}.{sub}"
                out.setdefault(key, []).extend(messages)
        return out
    if isinstance(detail, list):
        merged: dict[str, list[str]] = {}
        for item in detail:
            for sub, values in _flatten_details(item).items():
                merged.setdefault(sub, []).extend(values)
        return merged
    return {"non_field_errors": [str(detail)]}


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to the ApiError that describes it to the caller."""
    if isinstance(exc, ApiError):
        return exc
    if is_database_outage(exc):
        return database_unavailable(exc)
    if isinstance(exc, drf_exceptions.ValidationError):
        return ValidationError(details=_flatten_details(exc.detail))
    if isinstance(exc, drf_exceptions.ParseError):
        return ValidationError(f"Malformed JSON body: {exc.detail}")
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return UnsupportedMediaTypeError()
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        return InvalidApiKeyError()
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return MethodNotAllowedError(f"Method {exc.args[0] if exc.args else ''} not allowed.")
    if isinstance(exc, drf_exceptions.NotFound | Http404):
        return NotFoundError()
    if isinstance(exc, drf_exceptions.Throttled):
        # DRF sets .wait in Throttled.__init__; djangorestframework-stubs omit it.
        wait = max(1, int(exc.wait or 1))  # type: ignore[attr-defined]
        return RateLimitExceededError(headers={"Retry-After": str(wait)})
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLargeError()
    if isinstance(exc, drf_exceptions.PermissionDenied | PermissionDenied):
        return PermissionDeniedError()
    if isinstance(exc, SuspiciousOperation):
        return ValidationError("The request was rejected as invalid.")
    if isinstance(exc, drf_exceptions.APIException):
        error = ApiError(str(exc.detail))
        error.status_code = exc.status_code
        error.error_code = str(exc.default_code).upper()
        return error
    return InternalError()


def api_error_response(error: ApiError, request: HttpRequest | None = None) -> HttpResponse:
    """The envelope as a plain Django response (for code outside DRF views)."""
    response = json_response(error.body(), status=error.status_code)
    for name, value in error.headers.items():
        response[name] = value
    request_id = request_id_of(request) if request is not None else None
    if request_id:
        response["X-Request-Id"] = request_id
    if error.status_code >= 500:
        # Logged where it happened (a traceback for a bug, one line per outage).
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django's private flag
    return response


def refuse_method(request: HttpRequest, allowed: tuple[str, ...]) -> HttpResponse | None:
    """The 405 envelope, with Allow, for a plain view that answers only ``allowed``;
    None when the request's method is one of them."""
    if request.method in allowed:
        return None
    error = MethodNotAllowedError(
        f"Method {request.method} not allowed.", headers={"Allow": ", ".join(allowed)}
    )
    return api_error_response(error, request)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception raised in a view becomes the envelope."""
    error = to_api_error(exc)
    request = context.get("request")
    if isinstance(error, InternalError) and not isinstance(exc, ApiError):
        logger.exception(
            "Unhandled error in %s %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
        )
    response = Response(error.body(), status=error.status_code, headers=error.headers)
    if error.status_code >= 500:
        # Logged above with its traceback and request id, or as an outage; Django
        # need not log it again.
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django's private flag
    if isinstance(exc, drf_exceptions.MethodNotAllowed) and context.get("view") is not None:
        response["Allow"] = ", ".join(context["view"].allowed_methods)
    # As DRF's own handler: a view running inside a transaction (ATOMIC_REQUESTS, an
    # atomic block around the action) must not commit what it wrote before failing.
    set_rollback()
    return response


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return api_error_response(NotFoundError(), request)


def server_error_view(request: HttpRequest) -> HttpResponse:
    """handler500: an exception no view turned into an answer (one raised in a
    middleware, a probe, a page outside /v1). Django logs it with its traceback
    once this answer is made, unless the answer says it was logged already."""
    response = api_error_response(InternalError(), request)
    del response._has_been_logged  # type: ignore[attr-defined]  # Django's private flag
    return response


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return api_error_response(PayloadTooLargeError(), request)
    return api_error_response(ValidationError("The request was rejected as invalid."), request)


def permission_denied_view(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    return api_error_response(PermissionDeniedError(), request)


def csrf_failure_view(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the envelope under /v1, Django's page for the admin."""
    if request.path.startswith("/v1/") or request.path == "/v1":
        return api_error_response(PermissionDeniedError("CSRF verification failed."), request)
    from django.views.csrf import csrf_failure

    return csrf_failure(request, reason=reason)
