"""OpenAPI 3 (drf-spectacular): what /v1/openapi.json and /v1/docs say about the API.

Conventions for views; an endpoint added later follows them and is documented like
the rest, with nothing to repeat:

- **Success**: ``extend_schema(summary=..., request=..., responses={200: Serializer},
  examples=[...])`` with realistic ``OpenApiExample`` values for the request body and
  each success answer (``EXAMPLE_API_KEY`` is an ``ltx_`` key of the real shape,
  ``pm_card_visa`` a payment method; never "string").
- **Errors**: ``responses={..., **errors(AgentAlreadyExistsError, ...)}`` names the
  ``lithtrix.errors.ApiError`` classes only this operation raises (an instance, e.g.
  ``ValidationError(details={...})``, also gives its body as the example). The
  post-processing hook adds what every operation shares:

  - 500 INTERNAL_ERROR and 503 SERVICE_UNAVAILABLE everywhere; 400 VALIDATION_ERROR,
    413 PAYLOAD_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE where there is a body;
  - 401 INVALID_API_KEY and 429 RATE_LIMIT_EXCEEDED on keyed operations, 429 on
    those marked ``x-rate-limit`` (any throttle); 402 OVER_LIMIT on metered ones
    (``x-metered``: the Metered permission, /v1/authorize).

  Each error answer's schema is the ErrorEnvelope with ``error_code`` narrowed to an
  ``enum`` of that operation's codes for that status (for client generators), and
  one example envelope per code.
- **Headers**: ``X-Request-Id`` on every answer; ``RateLimit-*`` on every answer to
  a keyed operation except 401; ``Retry-After`` on 429 (and optional on 503);
  ``WWW-Authenticate`` on 401; ``X-Calls-Remaining`` on the 200 of metered ones.
- **Idempotency**: on actions marked idempotent (an ``idempotency_policy`` attribute,
  see idempotency.views; ``x-idempotent`` in the schema) the hook adds the
  ``Idempotency-Key`` parameter, ``Idempotent-Replayed`` on every answer, and 409
  IDEMPOTENCY_KEY_IN_USE / 422 IDEMPOTENCY_KEY_REUSED; the view declares nothing.
- **Constraints**: every constraint the server enforces is in the schema (lengths,
  patterns; string fields refuse NUL and whitespace-only values: see
  ``StrictCharFieldExtension``), so ``make fuzz`` can check that valid data is
  accepted and invalid data refused.
- **Grouping**: the tag comes from the path (``PATH_TAGS``), and operations are
  ordered as an agent meets them (``PATH_ORDER``): register, me, keys, billing,
  usage, metering, then the service's own endpoints. Views set no tags.
- **Not for agents**: an endpoint only a third party calls (Stripe's webhook,
  GitHub's secret-scanning reports to /v1/keys/leaked) is left out with
  ``extend_schema(exclude=True)`` (plain Django views are simply not added by
  ``add_plain_view_operations``).
"""

from __future__ import annotations

import copy
import re
import threading
from http import HTTPStatus
from typing import Any

from django.core.validators import RegexValidator
from django.urls import Resolver404, resolve
from drf_spectacular.drainage import warn
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from keys import crypto
from lithtrix import errors as api_errors

# drf-spectacular loads its extension classes lazily and not thread-safely: two
# threads generating a schema at once (gthread workers, the first requests of a
# process) can fail with an AttributeError. Every schema generation holds this lock.
SCHEMA_LOCK = threading.RLock()

SECURITY_SCHEME_NAME = "ApiKeyAuth"


def _example_key(random_part: str) -> str:
    """An ``ltx_`` key of the real shape, with a valid checksum (it works nowhere)."""
    return f"{crypto.KEY_PREFIX}{random_part}{crypto._checksum(random_part)}"


EXAMPLE_API_KEY = _example_key("h7Kq2ZpX9mWc4RtY8vNb3LsD6fGj1A")
EXAMPLE_ROTATED_KEY = _example_key("Q3nV8xLp1TzR6kWb9YcM2dHs5JfA7u")
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
    PaymentProviderError)})``. Classes or instances of ``lithtrix.errors.ApiError``;
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


def _shared_errors() -> dict[str, list[api_errors.ApiError]]:
    from billing.metering.meter import UPGRADE_URL

    return {
        "400": [api_errors.ValidationError()],
        "401": [api_errors.InvalidApiKeyError()],
        "402": [api_errors.OverLimitError(extra={"upgrade_url": UPGRADE_URL})],
        "413": [api_errors.PayloadTooLargeError()],
        "415": [api_errors.UnsupportedMediaTypeError()],
        "409": [api_errors.IdempotencyKeyInUseError()],
        "422": [api_errors.IdempotencyKeyReusedError()],
        "429": [api_errors.RateLimitExceededError()],
        "500": [api_errors.InternalError()],
        "503": [api_errors.ServiceUnavailableError()],
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


# --- /v1/authorize (a plain Django view) ---------------------------------------

# No DRF on the gateway's hot path, so it is described here. It accepts any method;
# OpenAPI has no "any method", so it is documented once, as GET (what nginx
# auth_request and Traefik ForwardAuth send), and `x-any-method` says the rest
# (deploy/fuzz.py reads it: other methods must answer as GET does, not 405).
AUTHORIZE_PATH = "/v1/authorize"
AUTHORIZED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "agent_id": {"type": "string", "format": "uuid"},
        "tier": {"type": "string", "enum": ["free", "pro"]},
    },
    "required": ["agent_id", "tier"],
}
AUTHORIZE_OPERATION: dict[str, Any] = {
    "operationId": "authorize",
    "summary": "Forward-auth for gateways (any method): authenticate, rate-limit, meter",
    "description": (
        "A gateway (nginx `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz`) "
        "sends each incoming request's `Authorization` header here first. 200 lets "
        "the call through: it was authenticated, rate-limited and counted; pass "
        "`X-Agent-Id` and `X-Agent-Tier` upstream. Otherwise return the envelope "
        "to the caller as it is (401, 402 OVER_LIMIT, 429).\n\n"
        "**Any HTTP method is accepted** and answered the same way (documented "
        "once, as GET: nginx and Traefik send GET; Envoy forwards the caller's "
        "method). The body is never read."
    ),
    "security": [{SECURITY_SCHEME_NAME: []}],
    "x-metered": True,
    "x-any-method": True,
    "responses": {
        "200": {
            "description": "Let the call through; pass the X-Agent-* headers upstream.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Authorized"},
                    "examples": {
                        "Allowed": {
                            "summary": "A Free agent's call, counted",
                            "value": {"agent_id": EXAMPLE_AGENT_ID, "tier": "free"},
                        }
                    },
                }
            },
            "headers": {
                "X-Agent-Id": _header("The agent's id.", {"type": "string", "format": "uuid"})
                | {"required": True},
                "X-Agent-Tier": _header("free or pro.", {"type": "string", "enum": ["free", "pro"]})
                | {"required": True},
            },
        }
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
    """drf-spectacular POSTPROCESSING_HOOK: operations of the non-DRF views agents call.

    (/v1/billing/webhook, Stripe's, is deliberately not among them.)
    """
    if _routed(AUTHORIZE_PATH, "authorize"):
        result.setdefault("components", {}).setdefault("schemas", {})["Authorized"] = (
            AUTHORIZED_SCHEMA
        )
        result.setdefault("paths", {})[AUTHORIZE_PATH] = {"get": copy.deepcopy(AUTHORIZE_OPERATION)}
    return result


# --- Grouping and order -----------------------------------------------------------

# (path prefix, tag, description), in the order an agent meets them.
PATH_TAGS: list[tuple[str, str, str]] = [
    ("/v1/register", "Register", "Sign up: an agent registers itself and gets its first key."),
    ("/v1/me", "Me", "The authenticated agent's own account."),
    ("/v1/keys", "Keys", "The agent's API keys: rotate, list, revoke."),
    ("/v1/billing", "Billing", "Tier and cap; upgrade from Free to Pro with Stripe."),
    ("/v1/usage", "Usage", "Metered calls: lifetime, this month, the last days."),
    ("/v1/authorize", "Metering", "Forward-auth for gateways in front of any API."),
]
SERVICE_TAG = ("Service", "What this service offers: the discovery document.")
TAGS = [
    {"name": name, "description": description}
    for name, description in [(tag, text) for _, tag, text in PATH_TAGS] + [SERVICE_TAG]
]
# Paths in the order they are used within their tag; unlisted ones follow, sorted.
PATH_ORDER = [
    "/v1/register",
    "/v1/me",
    "/v1/keys/rotate",
    "/v1/keys",
    "/v1/keys/revoke",
    "/v1/billing",
    "/v1/billing/config",
    "/v1/billing/setup",
    "/v1/billing/cancel",
    "/v1/usage",
    "/v1/authorize",
    "/v1/capabilities",
]
METHOD_ORDER = ["get", "post", "put", "patch", "delete", "head", "options", "trace"]


def tag_for(path: str) -> str:
    for prefix, tag, _ in PATH_TAGS:
        if path == prefix or path.startswith(prefix + "/"):
            return tag
    return SERVICE_TAG[0]


def _path_key(path: str) -> tuple[int, int, str]:
    tag_names = [tag["name"] for tag in TAGS]
    rank = PATH_ORDER.index(path) if path in PATH_ORDER else len(PATH_ORDER)
    return tag_names.index(tag_for(path)), rank, path


def group_and_order(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: tags from the path, paths in PATH_ORDER."""
    paths = result.get("paths", {})
    for path, operations in paths.items():
        for operation in operations.values():
            operation["tags"] = [tag_for(path)]
    used = {tag_for(path) for path in paths}
    result["tags"] = [tag for tag in TAGS if tag["name"] in used]
    result["paths"] = {
        path: dict(sorted(paths[path].items(), key=lambda item: METHOD_ORDER.index(item[0])))
        for path in sorted(paths, key=_path_key)
    }
    return result


# --- Errors and headers --------------------------------------------------------------


def _ref(name: str, *, required: bool = False) -> dict[str, Any]:
    # A $ref header object cannot carry `required`; required ones are inlined.
    if required:
        return {**HEADERS[name], "required": True}
    return {"$ref": f"#/components/headers/{name}"}


def _is_keyed(operation: dict[str, Any]) -> bool:
    security = operation.get("security", [])
    # [{}] (or nothing) means no credentials needed.
    return any(requirement for requirement in security) and {} not in security


def _resolved(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return components.get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    return schema


def _declared_bodies(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Envelopes ``errors``/``error_response`` declared on this answer (its marker schema)."""
    media = response.get("content", {}).get("application/json", {})
    schema = media.get("schema", {})
    if isinstance(schema, dict) and _DECLARED in schema:
        return list(schema[_DECLARED])
    return []


def _validation_example(operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A VALIDATION_ERROR naming the first required field of the operation's body."""
    schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    schema = _resolved(schema, components)
    required = schema.get("required") or list(schema.get("properties", {}))
    if not required:
        return api_errors.ValidationError("Malformed JSON body: JSON parse error.").body()
    return api_errors.ValidationError(details={required[0]: ["This field is required."]}).body()


def _error_response(
    description: str, bodies: list[dict[str, Any]], headers: dict[str, Any]
) -> dict[str, Any]:
    """The envelope with ``error_code`` narrowed to these codes, one example per body."""
    codes = list(dict.fromkeys(body["error_code"] for body in bodies))
    examples: dict[str, Any] = {}
    for body in bodies:
        name = body["error_code"]
        if name in examples:
            name = f"{name}_{sum(key.startswith(body['error_code']) for key in examples) + 1}"
        examples[name] = {"summary": body["message"], "value": body}
    return {
        "description": description,
        "headers": headers,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [ENVELOPE_REF],
                    "properties": {"error_code": {"type": "string", "enum": codes}},
                },
                "examples": examples,
            }
        },
    }


# Why each code happens, for the answers' descriptions (others: the error's message).
CODE_DESCRIPTIONS = {
    "VALIDATION_ERROR": "a field is missing or invalid (see `details`), or the JSON is malformed",
    "INVALID_API_KEY": "the key is missing, malformed, unknown, rotated away or revoked",
    "OVER_LIMIT": "the Free tier's lifetime calls are used up; upgrade at `upgrade_url`",
    "PAYLOAD_TOO_LARGE": "the body is over the configured maximum",
    "UNSUPPORTED_MEDIA_TYPE": "the body is not `application/json`",
    "RATE_LIMIT_EXCEEDED": "the per-minute limit is reached; retry after `Retry-After` seconds",
    "INTERNAL_ERROR": "a bug, logged with the request id",
    "SERVICE_UNAVAILABLE": "a dependency (database) cannot be reached; retry later",
}


def _describe(bodies: list[dict[str, Any]]) -> str:
    lines: dict[str, str] = {}
    for body in bodies:
        code = body["error_code"]
        lines.setdefault(code, f"`{code}`: {CODE_DESCRIPTIONS.get(code, body['message'])}")
    return "\n\n".join(lines.values())


def document_errors_and_headers(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: see the module docstring."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorEnvelope"] = ERROR_ENVELOPE_SCHEMA
    components.setdefault("headers", {}).update(HEADERS)
    shared = {code: [error.body() for error in found] for code, found in _shared_errors().items()}

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            keyed = _is_keyed(operation)
            codes = {"500", "503"}
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
            for code in sorted(codes | {c for c in responses if c >= "400"}):
                existing = responses.get(code, {})
                declared = _declared_bodies(existing)
                if existing and not declared:  # declared without a code: every code of it
                    declared = [
                        cls().body()
                        for cls in _all_error_classes()
                        if str(cls.status_code) == code and cls is not api_errors.ApiError
                    ]
                common = list(shared.get(code, [])) if code in codes else []
                if code == "400" and common:
                    common = (
                        [_validation_example(operation, components)]
                        if "requestBody" in operation
                        else []
                    )
                declared_codes = {body["error_code"] for body in declared}
                bodies = declared + [b for b in common if b["error_code"] not in declared_codes]
                if code == "400" and idempotent:
                    bodies.append(_idempotency_key_example(idempotent["min_key_length"]))
                if not bodies:
                    warn(f"answer {code} of {operation.get('operationId')}: no ApiError has it")
                    bodies = [api_errors.ApiError().body()]
                responses[code] = _error_response(
                    _describe(bodies), bodies, existing.get("headers", {})
                )
            for code, response in responses.items():
                if not response.get("description"):
                    response["description"] = HTTPStatus(int(code)).phrase
                headers = response.setdefault("headers", {})
                headers["X-Request-Id"] = _ref("X-Request-Id", required=True)
                if keyed and code != "401":
                    # Once the rate limit has been decided, every answer carries them
                    # (a 500 or 503 may come before it is, and so does an answer
                    # replayed under an Idempotency-Key, or refused with 409/422
                    # because of it).
                    for name in RATE_LIMIT_HEADERS:
                        headers[name] = _ref(
                            name, required=code not in ("500", "503") and not idempotent
                        )
                if code == "429":
                    headers["Retry-After"] = _ref("Retry-After", required=True)
                if code == "503":
                    headers["Retry-After"] = _ref("Retry-After")
                if code == "401":
                    headers["WWW-Authenticate"] = _ref("WWW-Authenticate", required=True)
                if idempotent and code not in {"409", "422"}:
                    headers["Idempotent-Replayed"] = _ref("Idempotent-Replayed")
                if operation.get("x-metered") and code == "200":
                    headers["X-Calls-Remaining"] = _ref("X-Calls-Remaining")
            operation["responses"] = dict(sorted(responses.items()))
    return result


# --- Links: a new key is the Bearer key of the calls after it -----------------------


def link_new_keys(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: each success answer carrying an ``api_key``
    (register, rotate) links to every keyed operation, with that key as its Bearer
    key. Swagger UI shows the links; schemathesis' stateful phase follows them."""
    components = result.get("components", {})
    keyed = [
        operation["operationId"]
        for operations in result.get("paths", {}).values()
        for operation in operations.values()
        if _is_keyed(operation) and "operationId" in operation
    ]
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if not code.startswith("2"):
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if "api_key" not in _resolved(schema, components).get("properties", {}):
                    continue
                response["links"] = {
                    target: {
                        "operationId": target,
                        "parameters": {"header.Authorization": "Bearer {$response.body#/api_key}"},
                        "description": "Call it with the key this answer carries.",
                    }
                    for target in keyed
                }
    return result


def _idempotency_key_example(min_length: int) -> dict[str, Any]:
    """The VALIDATION_ERROR of a malformed Idempotency-Key (idempotency.views.validate_key)."""
    from idempotency.views import IdempotencyPolicy, validate_key

    try:
        validate_key("x" * max(min_length - 1, 0), IdempotencyPolicy(min_key_length=min_length))
    except api_errors.ValidationError as error:
        return error.body()
    raise AssertionError("an empty Idempotency-Key is refused")  # pragma: no cover


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
