"""The one error family, classes only: views and services raise them; the handler
that turns them into the envelope is lithtrix.core.responses.

    {"status": "error", "error_code": "...", "message": "...", ["details": {...}]}
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API reports to its caller. Subclasses fix status and code."""

    status_code = 500
    error_code = "INTERNAL_ERROR"
    default_message = "An internal error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "error_code": self.error_code,
            "message": self.message,
        }
        if self.details is not None:
            body["details"] = self.details
        body.update(self.extra)
        return body


class ValidationError(ApiError):
    status_code = 400
    error_code = "VALIDATION_ERROR"
    default_message = "The request is invalid."


class InvalidApiKeyError(ApiError):
    status_code = 401
    error_code = "INVALID_API_KEY"
    default_message = "The API key is missing, malformed, unknown or no longer valid."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class OverLimitError(ApiError):
    status_code = 402
    error_code = "OVER_LIMIT"
    default_message = "Free tier lifetime call limit reached. Upgrade to Pro to continue."


class PaymentFailedError(ApiError):
    status_code = 402
    error_code = "PAYMENT_FAILED"
    default_message = "The payment method was declined."


class PermissionDeniedError(ApiError):
    status_code = 403
    error_code = "FORBIDDEN"
    default_message = "You do not have permission to perform this action."


class NotFoundError(ApiError):
    status_code = 404
    error_code = "NOT_FOUND"
    default_message = "The requested resource was not found."


class MethodNotAllowedError(ApiError):
    status_code = 405
    error_code = "METHOD_NOT_ALLOWED"
    default_message = "Method not allowed."


class AgentAlreadyExistsError(ApiError):
    status_code = 409
    error_code = "AGENT_ALREADY_EXISTS"
    default_message = (
        "An agent with this agent_name and owner_identifier already exists. "
        "Its key was lost? Repeat the first request with its Idempotency-Key to get "
        "the first answer again, or ask support to reissue the agent's key."
    )


class IdempotencyKeyInUseError(ApiError):
    status_code = 409
    error_code = "IDEMPOTENCY_KEY_IN_USE"
    default_message = (
        "A request with this Idempotency-Key is still being processed; retry in a moment."
    )


class IdempotencyKeyReusedError(ApiError):
    status_code = 422
    error_code = "IDEMPOTENCY_KEY_REUSED"
    default_message = (
        "This Idempotency-Key was already used for a different request "
        "(method, path, credential or body). Use a new key for a new request."
    )


class LengthRequiredError(ApiError):
    status_code = 411
    error_code = "LENGTH_REQUIRED"
    default_message = "This server cannot read a chunked request body; send a Content-Length."


class PayloadTooLargeError(ApiError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"
    default_message = "The request body is too large."


class UnsupportedMediaTypeError(ApiError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "The request body must be JSON (Content-Type: application/json)."


class RateLimitExceededError(ApiError):
    status_code = 429
    error_code = "RATE_LIMIT_EXCEEDED"
    default_message = "Per-minute rate limit exceeded. See Retry-After header."


class InternalError(ApiError):
    pass


class PaymentProviderError(ApiError):
    status_code = 502
    error_code = "PAYMENT_PROVIDER_ERROR"
    default_message = "The payment provider could not be reached. Nothing was changed; retry later."


class BillingInProgressError(ApiError):
    """Another billing action (setup, cancel, deletion) of the agent holds its lease."""

    status_code = 409
    error_code = "BILLING_IN_PROGRESS"
    default_message = (
        "Another billing request of this agent is still running. Retry in a few seconds."
    )

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", "2")


class BillingUnavailableError(ApiError):
    status_code = 503
    error_code = "BILLING_UNAVAILABLE"
    default_message = "Billing is not configured on this deployment."


# Seconds a client is asked to wait when a dependency is down (unless a 503 says more).
UNAVAILABLE_RETRY_AFTER = 5


class ServiceUnavailableError(ApiError):
    """A dependency (database, cache) cannot be reached; /readyz names which. Every one
    says when to retry (Retry-After)."""

    status_code = 503
    error_code = "SERVICE_UNAVAILABLE"
    default_message = "The service is not ready."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(UNAVAILABLE_RETRY_AFTER))


class StripeCallsBusyError(ServiceUnavailableError):
    """Every Stripe call slot (LITHTRIX_STRIPE_CALL_SLOTS) is taken: refused at once."""

    default_message = (
        "Too many billing requests are waiting on the payment provider. Nothing was "
        "changed; retry in a few seconds."
    )


# --- Django-level handlers (urls.py handler404 / handler500, catch-all routes) ---
