"""The documented API's building blocks: example values, the API-key scheme, the
error envelope, ``errors(...)`` declarations, and the schema class views get."""

from __future__ import annotations

import re
import threading
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from lithtrix.core import exceptions as api_errors

# drf-spectacular loads its extension classes lazily and not thread-safely: two
# threads generating a schema at once (gthread workers, the first requests of a
# process) can fail with an AttributeError. Every schema generation holds this lock.
SCHEMA_LOCK = threading.RLock()

SECURITY_SCHEME_NAME = "ApiKeyAuth"


# ltx_ keys of the real shape, checksum included (keys/tests/test_crypto.py checks them).
EXAMPLE_API_KEY = "ltx_h7Kq2ZpX9mWc4RtY8vNb3LsD6fGj1A27yJ89"
EXAMPLE_ROTATED_KEY = "ltx_Q3nV8xLp1TzR6kWb9YcM2dHs5JfA7u24JfN2"
EXAMPLE_AGENT_ID = "3f1c9a52-7b0e-4d6a-9c2e-8a41d5b7e903"
EXAMPLE_PAYMENT_METHOD = "pm_card_visa"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer ltx_...`` for keys.authentication.ApiKeyAuthentication."""

    target_class = "keys.authentication.ApiKeyAuthentication"
    name = SECURITY_SCHEME_NAME

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ltx_ API key",
            "description": "An `ltx_` key from POST /v1/register or POST /v1/keys/rotate.",
        }


# What DRF's CharField refuses besides lengths: NUL characters, and (allow_blank off)
# a value that is empty or only whitespace. As a JSON Schema pattern: no NUL, at
# least one character that is not whitespace.
NON_BLANK_TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
TEXT_PATTERN = r"^[^\u0000]*$"


class StrictCharFieldExtension(OpenApiSerializerFieldExtension):
    """Request string fields state what DRF's CharField refuses (see the patterns above)
    unless the field has a pattern of its own (which then excludes them already)."""

    target_class = "rest_framework.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        has_own_pattern = any(isinstance(v, RegexValidator) for v in self.target.validators)
        if (
            direction == "request"
            and schema.get("type") == "string"
            and not has_own_pattern
            and "pattern" not in schema
            and "format" not in schema
            and "enum" not in schema
        ):
            schema["pattern"] = TEXT_PATTERN if self.target.allow_blank else NON_BLANK_TEXT_PATTERN
        return schema


ERROR_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every non-2xx answer, from every endpoint.",
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "error_code": {
            "type": "string",
            "description": (
                "Stable machine-readable code. Each operation's answers list the codes "
                "it can return for each status as an enum."
            ),
            "pattern": "^[A-Z][A-Z0-9_]*$",
        },
        "message": {"type": "string", "minLength": 1},
        "details": {
            "type": "object",
            "description": "VALIDATION_ERROR only: messages per field.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "upgrade_url": {"type": "string", "description": "OVER_LIMIT only."},
    },
    "required": ["status", "error_code", "message"],
}
ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


class ErrorEnvelopeSerializer(serializers.Serializer):
    """For ``error_response``; the hook replaces its component with ERROR_ENVELOPE_SCHEMA."""

    status = serializers.CharField()
    error_code = serializers.CharField()
    message = serializers.CharField()

    class Meta:
        ref_name = "ErrorEnvelope"


# --- Declaring errors ------------------------------------------------------------

ErrorSpec = type[api_errors.ApiError] | api_errors.ApiError
_DECLARED = "x-lithtrix-errors"  # marker the hook reads, then removes


def _all_error_classes() -> list[type[api_errors.ApiError]]:
    found, pending = [], [api_errors.ApiError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def error_class(code: str) -> type[api_errors.ApiError]:
    """The ApiError class whose ``error_code`` is ``code``."""
    for cls in _all_error_classes():
        if cls.error_code == code:
            return cls
    raise LookupError(f"no ApiError has error_code {code!r}")


def _instance(spec: ErrorSpec) -> api_errors.ApiError:
    return spec if isinstance(spec, api_errors.ApiError) else spec()


def errors(*specs: ErrorSpec) -> dict[int, OpenApiResponse]:
    """``responses`` entries, one per status, for the errors only this operation raises.

    ``extend_schema(responses={200: Serializer, **errors(PaymentFailedError,
    PaymentProviderError)})``. Classes or instances of ``lithtrix.core.exceptions.ApiError``;
    an instance's body is the example (e.g. a ValidationError with ``details``).
    """
    by_status: dict[int, list[dict[str, Any]]] = {}
    for spec in specs:
        error = _instance(spec)
        by_status.setdefault(error.status_code, []).append(error.body())
    return {
        status: OpenApiResponse(
            response={_DECLARED: bodies},
            description=", ".join(dict.fromkeys(body["error_code"] for body in bodies)),
        )
        for status, bodies in by_status.items()
    }


_CODE_AT_START = re.compile(r"^([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")


def error_response(description: str) -> OpenApiResponse:
    """Older form of ``errors``: a description starting with the code ("CODE: why").
    Without a known code, the answer lists every code of its status."""
    match = _CODE_AT_START.match(description)
    try:
        body = error_class(match.group(1))().body() if match else None
    except LookupError:
        body = None
    if body is None:
        return OpenApiResponse(response=ErrorEnvelopeSerializer, description=description)
    return OpenApiResponse(response={_DECLARED: [body]}, description=description)


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "schema": schema}


_INTEGER = {"type": "integer", "minimum": 0}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": _header(
        "Id of this request, also on every log line it produced.", {"type": "string"}
    ),
    "RateLimit-Limit": _header("Requests allowed in the current window.", _INTEGER),
    "RateLimit-Remaining": _header("Requests left in the current window.", _INTEGER),
    "RateLimit-Reset": _header("Whole seconds until the window resets.", _INTEGER),
    "Retry-After": _header(
        "Whole seconds to wait before retrying.", {"type": "integer", "minimum": 1}
    ),
    "WWW-Authenticate": _header("Always `Bearer`.", {"type": "string"}),
    "Idempotent-Replayed": _header(
        "`true` when this is the stored answer to an earlier request with the same "
        "Idempotency-Key.",
        {"type": "string", "enum": ["true"]},
    ),
    "X-Calls-Remaining": _header(
        "Free agents only: lifetime metered calls left after this one (Pro: absent).", _INTEGER
    ),
}
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


METERED_PERMISSION = "billing.metering.permissions.Metered"


class LithtrixAutoSchema(AutoSchema):
    """Marks operations of metered views (the Metered permission) with ``x-metered``
    and those of rate-limited views (any throttle) with ``x-rate-limit``."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        if any(
            f"{cls.__module__}.{cls.__qualname__}" == METERED_PERMISSION
            for cls in getattr(self.view, "permission_classes", [])
        ):
            operation["x-metered"] = True
        if getattr(self.view, "throttle_classes", None):
            operation.setdefault("x-rate-limit", "per agent; per client IP without a key")
        action = getattr(self.view, getattr(self.view, "action", None) or "", None)
        policy = getattr(action, "idempotency_policy", None)
        if policy is not None:
            operation["x-idempotent"] = {"min_key_length": policy.min_key_length}
        return operation

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        # drf-spectacular describes bodies of POST, PUT and PATCH only; a DELETE that
        # declares one (DELETE /v1/me's confirmation) reads it, so it is described too.
        if self.method != "DELETE" or self.get_request_serializer() is None:
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"
