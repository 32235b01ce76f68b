"""The one way to Stripe: configuration, deadline, logging and error translation.

The calls themselves are in billing.payments.stripe_calls.

stripe-python is configured here from settings (key, STRIPE_API_BASE, timeouts,
retries) for our calls and for dj-stripe's, which use the same global client.
Every request is logged with method, path, status, duration and Stripe's request
id; never with headers (the secret key) or bodies.

Deadline: a request that calls Stripe runs inside ``deadline()``; every attempt,
retries included, then fits in STRIPE_REQUEST_DEADLINE_SECONDS: each attempt's
connect/read timeout is cut to the time left, a retry (and its back-off sleep)
happens only while time is left, and once the budget is spent no further call is
made. A worker is thus never held by Stripe beyond the deadline, well under
gunicorn's timeout.

Errors leave this module as ApiErrors: a decline is PaymentFailedError (402),
anything else Stripe or the network does is PaymentProviderError (502).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import urlsplit

import stripe
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from lithtrix.core import metrics, outages
from lithtrix.core.exceptions import (
    BillingUnavailableError,
    PaymentFailedError,
    PaymentProviderError,
    ValidationError,
)

logger = logging.getLogger("billing.stripe")

# Subscription statuses that entitle the customer to Pro; Stripe still collects
# (or retries collecting) for these.
ENTITLED_STATUSES = frozenset({"active", "trialing", "past_due"})
# Statuses after which the subscription never charges again.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
# A subscription in one of these no longer entitles to Pro.
DOWNGRADE_STATUSES = frozenset({"canceled", "unpaid", "incomplete_expired"})

T = TypeVar("T")

# time.monotonic() by which this context's Stripe calls must be done; None: no deadline.
_deadline_at: ContextVar[float | None] = ContextVar("stripe_deadline_at", default=None)
# Below this many seconds left, another attempt could not get an answer anyway.
_MIN_ATTEMPT_SECONDS = 0.05


def time_left() -> float | None:
    """Seconds left before the current deadline; None outside ``deadline()``."""
    at = _deadline_at.get()
    return None if at is None else at - time.monotonic()


@contextmanager
def deadline(seconds: float | None = None) -> Iterator[None]:
    """Every Stripe call inside finishes (or fails) within ``seconds``, retries included.

    Default: STRIPE_REQUEST_DEADLINE_SECONDS. Nested, the earlier deadline wins.
    """
    budget = settings.STRIPE_REQUEST_DEADLINE_SECONDS if seconds is None else seconds
    at = time.monotonic() + budget
    outer = _deadline_at.get()
    token = _deadline_at.set(at if outer is None else min(outer, at))
    try:
        yield
    finally:
        _deadline_at.reset(token)


class DeadlineExceeded(stripe.APIConnectionError):
    """The request's Stripe budget is spent: no further attempt is made."""


class LoggingRequestsClient(stripe.RequestsClient):
    """stripe-python's requests client: a log line per attempt (secrets left out), and
    timeouts and retries bounded by the current ``deadline()``."""

    name = "requests"

    # stripe.RequestsClient reads self._timeout for each attempt; the property cuts
    # the configured (connect, read) timeouts to the time left. Per context, so
    # concurrent threads each get their own budget.
    @property
    def _timeout(self) -> Any:
        left = time_left()
        if left is None:
            return self._configured_timeout
        connect, read = self._configured_timeout
        left = max(left, _MIN_ATTEMPT_SECONDS)
        return (min(connect, left), min(read, left))

    @_timeout.setter
    def _timeout(self, value: Any) -> None:
        self._configured_timeout = value

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if isinstance(api_connection_error, DeadlineExceeded):
            return False
        left = time_left()
        # A retry sleeps first (back-off); none when that alone would spend the budget.
        if left is not None and left < self._sleep_time_seconds(num_retries + 1):
            return False
        return super()._should_retry(
            response, api_connection_error, num_retries, max_network_retries
        )

    # The signature of stripe.RequestsClient.request, which itself narrows HTTPClient's
    # (bytes, not str; no _usage): the override error is stripe's own.
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        path = urlsplit(url).path
        left = time_left()
        if left is not None and left < _MIN_ATTEMPT_SECONDS:
            logger.info("stripe %s %s not sent: request deadline passed", method.upper(), path)
            exceeded = DeadlineExceeded("The Stripe request deadline passed.", should_retry=False)
            # Stripe too slow to answer within the deadline is an outage like a refusal.
            outages.report_failure("stripe", exceeded, action="billing requests answer 502")
            raise exceeded
        started = time.monotonic()
        try:
            body, status, response_headers = super().request(method, url, headers, post_data)
        except Exception as exc:
            metrics.observe_stripe_call("network_error", time.monotonic() - started)
            # Stripe unreachable fails every attempt of every billing request alike: one
            # warning per outage interval (with the count), not one per attempt.
            outages.report_failure("stripe", exc, action="billing requests answer 502")
            logger.info(
                "stripe %s %s failed after %.0f ms: %s",
                method.upper(),
                path,
                (time.monotonic() - started) * 1000,
                type(exc).__name__,
            )
            raise
        outages.report_success("stripe")
        metrics.observe_stripe_call(f"{status // 100}xx", time.monotonic() - started)
        logger.info(
            "stripe %s %s -> %s in %.0f ms (request id %s)",
            method.upper(),
            path,
            status,
            (time.monotonic() - started) * 1000,
            response_headers.get("Request-Id", "-") if response_headers else "-",
        )
        return body, status, response_headers


def apply_settings() -> None:
    """Point stripe-python at the configured server, with timeouts and retries."""
    stripe.api_key = settings.STRIPE_SECRET_KEY or None
    stripe.api_base = settings.STRIPE_API_BASE.rstrip("/") or stripe.DEFAULT_API_BASE
    stripe.max_network_retries = settings.STRIPE_MAX_NETWORK_RETRIES
    stripe.enable_telemetry = False
    stripe.default_http_client = LoggingRequestsClient(
        timeout=(settings.STRIPE_CONNECT_TIMEOUT_SECONDS, settings.STRIPE_TIMEOUT_SECONDS)
    )
    # stripe-python's own INFO lines repeat ours; its DEBUG lines carry request bodies.
    logging.getLogger("stripe").setLevel(logging.WARNING)


@receiver(setting_changed)
def _reapply_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    # Tests override STRIPE_* settings per test.
    if setting.startswith("STRIPE_"):
        apply_settings()


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_PUBLISHABLE_KEY)


def require_configured() -> None:
    if not is_configured():
        raise BillingUnavailableError()


def api_key() -> str:
    require_configured()
    return settings.STRIPE_SECRET_KEY


def publishable_key() -> str:
    require_configured()
    return settings.STRIPE_PUBLISHABLE_KEY


@contextmanager
def translated_errors(
    action: str, *, missing_field: str | None = None, missing_is_expected: bool = False
) -> Iterator[None]:
    """Stripe's exceptions -> the API's errors. Messages never carry a key.

    ``missing_field``: the request field whose Stripe id, when Stripe does not know
    it, makes the caller's request invalid (400) rather than Stripe's answer (502).
    ``missing_is_expected``: a 404 is an answer the caller looks for (an object made
    on first use), logged at INFO; it still raises PaymentProviderError.
    """
    try:
        yield
    except stripe.CardError as exc:
        logger.info("stripe %s declined: code=%s", action, exc.code)
        raise PaymentFailedError(exc.user_message or PaymentFailedError.default_message) from exc
    except stripe.InvalidRequestError as exc:
        if missing_field and (exc.http_status == 404 or exc.code == "resource_missing"):
            logger.info("stripe %s: unknown %s", action, missing_field)
            raise ValidationError(
                details={missing_field: ["Stripe does not know this id."]}
            ) from exc
        if missing_is_expected and exc.http_status == 404:
            logger.info("stripe %s: not found (yet)", action)
            raise PaymentProviderError() from exc
        _log_provider_error(action, exc)
        raise PaymentProviderError() from exc
    except stripe.StripeError as exc:
        _log_provider_error(action, exc)
        raise PaymentProviderError() from exc


def answered(exc: BaseException) -> bool:
    """Whether Stripe definitely answered the call behind ``exc`` with a refusal (a 4xx:
    it did nothing), rather than failing or never answering (a connection error, the
    deadline, a 5xx), after which it may have acted all the same."""
    cause = exc.__cause__
    status = getattr(cause, "http_status", None)
    return isinstance(cause, stripe.StripeError) and status is not None and 400 <= status < 500


def _log_provider_error(action: str, exc: stripe.StripeError) -> None:
    # No answer at all (connection refused, timeouts, the deadline): the outage line
    # (lithtrix.core.outages) warns of it; an answer Stripe gave is a warning each.
    unanswered = isinstance(exc, stripe.APIConnectionError) and exc.http_status is None
    logger.log(
        logging.INFO if unanswered else logging.WARNING,
        "stripe %s failed: %s http_status=%s code=%s",
        action,
        type(exc).__name__,
        exc.http_status,
        exc.code,
    )


def call(action: str, fn: Callable[..., T], /, *args: Any, **params: Any) -> T:
    """``fn`` (a stripe-python call) with the configured key, its errors translated."""
    with translated_errors(action):
        return fn(*args, api_key=api_key(), **params)
