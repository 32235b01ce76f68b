"""OpenAPI 3 (drf-spectacular): the error envelope, the standard headers, Bearer keys.

Views describe their success bodies and the errors only they raise (409, 402...)
with ``extend_schema``. The post-processing hook adds what every operation shares,
so an endpoint added later is documented the same way without repeating it:

- 500 on every operation; 400, 413 and 415 on those that take a body;
  401 and 429 on those that need a key, 429 on those marked ``x-rate-limit``;
  402 on metered ones (``x-metered``: the Metered permission, /v1/authorize);
- ``X-Request-Id`` on every answer; ``RateLimit-*`` on every answer to a keyed
  operation except 401; ``Retry-After`` on 429; ``WWW-Authenticate`` on 401;
  ``X-Calls-Remaining`` on the 200 of metered ones;
- on actions marked idempotent (an ``idempotency_policy`` attribute, see
  idempotency.views): the ``Idempotency-Key`` parameter, ``Idempotent-Replayed``
  on every answer, 409 IDEMPOTENCY_KEY_IN_USE and 422 IDEMPOTENCY_KEY_REUSED.
"""

from __future__ import annotations

import copy
from typing import Any

from django.urls import Resolver404, resolve
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

SECURITY_SCHEME_NAME = "ApiKeyAuth"


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


ERROR_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every non-2xx answer, from every endpoint.",
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "error_code": {
            "type": "string",
            "description": "Stable machine-readable code, e.g. INVALID_API_KEY.",
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


class ErrorEnvelopeSerializer(serializers.Serializer):
    """For ``extend_schema(responses=...)``; the hook replaces its component with
    ERROR_ENVELOPE_SCHEMA so there is one definition."""

    status = serializers.CharField()
    error_code = serializers.CharField()
    message = serializers.CharField()

    class Meta:
        ref_name = "ErrorEnvelope"


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorEnvelopeSerializer, description=description)


ERROR_DESCRIPTIONS = {
    "400": "VALIDATION_ERROR: missing or invalid field, malformed JSON, wrong types.",
    "401": "INVALID_API_KEY: key missing, malformed, unknown, rotated away or revoked.",
    "402": "OVER_LIMIT (Free lifetime cap reached) or PAYMENT_FAILED.",
    "404": "NOT_FOUND.",
    "405": "METHOD_NOT_ALLOWED.",
    "409": "AGENT_ALREADY_EXISTS or IDEMPOTENCY_KEY_IN_USE.",
    "413": "PAYLOAD_TOO_LARGE: body over the configured maximum.",
    "415": "UNSUPPORTED_MEDIA_TYPE: the body is not JSON.",
    "422": "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used for a different request.",
    "429": "RATE_LIMIT_EXCEEDED: per-minute limit hit; see Retry-After.",
    "500": "INTERNAL_ERROR: a bug, logged with the request id.",
    "502": "PAYMENT_PROVIDER_ERROR.",
    "503": "BILLING_UNAVAILABLE or SERVICE_UNAVAILABLE.",
}


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


# /v1/authorize is a plain Django view (no DRF on the gateway's hot path), so it is
# described here; any method is accepted, gateways use GET.
AUTHORIZE_PATH = "/v1/authorize"
AUTHORIZE_METHODS = ("get", "post", "put", "patch", "delete")
AUTHORIZED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "agent_id": {"type": "string", "format": "uuid"},
        "tier": {"type": "string", "enum": ["free", "pro"]},
    },
    "required": ["agent_id", "tier"],
}


def _authorize_operation(method: str) -> dict[str, Any]:
    return {
        "operationId": f"authorize_{method}",
        "summary": "Forward-auth for gateways: authenticate, rate-limit and meter one call",
        "description": (
            "A gateway (nginx `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz`) "
            "sends each incoming request's `Authorization` header here first. 200 lets "
            "the call through: it was authenticated, rate-limited and metered. Any "
            "method; the body is never read."
        ),
        "tags": ["metering"],
        "security": [{SECURITY_SCHEME_NAME: []}],
        "x-metered": True,
        "responses": {
            "200": {
                "description": "Let the call through; pass the X-Agent-* headers upstream.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Authorized"}}
                },
                "headers": {
                    "X-Agent-Id": _header("The agent's id.", {"type": "string"})
                    | {"required": True},
                    "X-Agent-Tier": _header("free or pro.", {"type": "string"})
                    | {"required": True},
                    "X-Calls-Remaining": {"$ref": "#/components/headers/X-Calls-Remaining"},
                },
            }
        },
    }


WEBHOOK_PATH = "/v1/billing/webhook"
WEBHOOK_OPERATION: dict[str, Any] = {
    "operationId": "billing_webhook",
    "summary": "Stripe's events, signed with the endpoint's secret (for Stripe only)",
    "tags": ["billing"],
    "parameters": [
        {
            "name": "Stripe-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Stripe's signature of the payload.",
        }
    ],
    "requestBody": {
        "content": {"application/json": {"schema": {"type": "object"}}},
        "required": True,
    },
    "responses": {
        "200": {"description": "The event was recorded (dj-stripe's answer)."},
        "400": {
            "description": "VALIDATION_ERROR: missing or wrong signature.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
            },
        },
    },
}


def _routed(path: str, url_name: str) -> bool:
    try:
        return resolve(path).url_name == url_name
    except Resolver404:
        return False


def add_plain_view_operations(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: operations of the non-DRF views."""
    if _routed(AUTHORIZE_PATH, "authorize"):
        result.setdefault("components", {}).setdefault("schemas", {})["Authorized"] = (
            AUTHORIZED_SCHEMA
        )
        result.setdefault("paths", {})[AUTHORIZE_PATH] = {
            method: _authorize_operation(method) for method in AUTHORIZE_METHODS
        }
    if _routed(WEBHOOK_PATH, "billing-webhook"):
        result.setdefault("paths", {})[WEBHOOK_PATH] = {"post": copy.deepcopy(WEBHOOK_OPERATION)}
    result["paths"] = dict(sorted(result.get("paths", {}).items()))
    return result


def _ref(name: str, *, required: bool = False) -> dict[str, Any]:
    # A $ref header object cannot carry `required`; required ones are inlined.
    if required:
        return {**HEADERS[name], "required": True}
    return {"$ref": f"#/components/headers/{name}"}


def _is_keyed(operation: dict[str, Any]) -> bool:
    security = operation.get("security", [])
    # [{}] (or nothing) means no credentials needed.
    return any(requirement for requirement in security) and {} not in security


def document_errors_and_headers(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: see the module docstring."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorEnvelope"] = ERROR_ENVELOPE_SCHEMA
    components.setdefault("headers", {}).update(HEADERS)
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            keyed = _is_keyed(operation)
            codes = {"500"}
            if "requestBody" in operation:
                codes |= {"400", "413", "415"}
            if keyed:
                codes |= {"401", "429"}
            if operation.get("x-rate-limit"):
                codes.add("429")
            if operation.get("x-metered"):
                codes.add("402")
            idempotent = operation.get("x-idempotent")
            if idempotent:
                codes |= {"400", "409", "422"}
                _add_idempotency_parameter(operation, idempotent["min_key_length"])
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code, {"description": ERROR_DESCRIPTIONS[code], "content": envelope}
                )
            for code, response in responses.items():
                headers = response.setdefault("headers", {})
                headers["X-Request-Id"] = _ref("X-Request-Id", required=True)
                if keyed and code != "401":
                    # Once the rate limit has been decided, every answer carries them
                    # (a 500 may come before it is, and so does an answer replayed
                    # under an Idempotency-Key, or refused with 409/422 because of it).
                    for name in RATE_LIMIT_HEADERS:
                        headers[name] = _ref(name, required=code != "500" and not idempotent)
                if code == "429":
                    headers["Retry-After"] = _ref("Retry-After", required=True)
                if code == "401":
                    headers["WWW-Authenticate"] = _ref("WWW-Authenticate", required=True)
                if idempotent and code not in {"409", "422"}:
                    headers["Idempotent-Replayed"] = _ref("Idempotent-Replayed")
                if operation.get("x-metered") and code == "200":
                    headers["X-Calls-Remaining"] = _ref("X-Calls-Remaining")
            operation["responses"] = dict(sorted(responses.items()))
    return result


def _add_idempotency_parameter(operation: dict[str, Any], min_length: int) -> None:
    parameters = operation.setdefault("parameters", [])
    length = f", at least {min_length} characters (a UUID4 is fine)" if min_length > 1 else ""
    if any(p.get("name") == "Idempotency-Key" for p in parameters):
        return
    parameters.append(
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {
                "type": "string",
                "minLength": min_length,
                "maxLength": 255,
                "pattern": "^[!-~]([ -~]*[!-~])?$",
            },
            "description": (
                "Makes a retry safe: the same request with the same key within "
                "LITHTRIX_IDEMPOTENCY_TTL_HOURS (24 h) gets the first answer again "
                f"(`Idempotent-Replayed: true`); nothing runs twice. Printable ASCII{length}."
            ),
        }
    )
