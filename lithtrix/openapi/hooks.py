"""Post-processing hooks for what every operation shares: error answers and their
enums, headers, links from new keys, Idempotency-Key."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from drf_spectacular.drainage import warn

from billing.metering.meter import UPGRADE_URL
from idempotency.views import IdempotencyPolicy, validate_key
from lithtrix.core import exceptions as api_errors
from lithtrix.core.openapi import (
    _DECLARED,
    ENVELOPE_REF,
    ERROR_ENVELOPE_SCHEMA,
    HEADERS,
    RATE_LIMIT_HEADERS,
    _all_error_classes,
)

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


NO_BODY_EXAMPLE = api_errors.ValidationError(
    "This endpoint takes no body; if one is sent, a JSON object."
).body()


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
            # x-no-body: an action that takes no body still refuses a bad one
            # (lithtrix.core.parsers.require_no_body), as every body is refused.
            no_body = bool(operation.get("x-no-body"))
            if "requestBody" in operation or no_body:
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
                        else [NO_BODY_EXAMPLE]
                        if no_body
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


def _shared_errors() -> dict[str, list[api_errors.ApiError]]:
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
