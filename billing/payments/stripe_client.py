"""The one module that talks to Stripe.

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

from lithtrix import metrics
from lithtrix.errors import (
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
            logger.warning("stripe %s %s not sent: request deadline passed", method.upper(), path)
            raise DeadlineExceeded("The Stripe request deadline passed.", should_retry=False)
        started = time.monotonic()
        try:
            body, status, response_headers = super().request(method, url, headers, post_data)
        except Exception as exc:
            metrics.observe_stripe_call("network_error", time.monotonic() - started)
            logger.warning(
                "stripe %s %s failed after %.0f ms: %s",
                method.upper(),
                path,
                (time.monotonic() - started) * 1000,
                type(exc).__name__,
            )
            raise
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


def _log_provider_error(action: str, exc: stripe.StripeError) -> None:
    logger.warning(
        "stripe %s failed: %s http_status=%s code=%s",
        action,
        type(exc).__name__,
        exc.http_status,
        exc.code,
    )


def _call(action: str, fn: Callable[..., T], /, *args: Any, **params: Any) -> T:
    with translated_errors(action):
        return fn(*args, api_key=api_key(), **params)


# --- The calls billing makes ------------------------------------------------------


def customer_create(*, agent_id: str, agent_name: str, idempotency_key: str) -> stripe.Customer:
    """Create the Stripe Customer of an agent.

    The idempotency key makes a retried request (a timeout, a retry after a decline
    within Stripe's 24 h window) return the customer created the first time.
    """
    return _call(
        "customer.create",
        stripe.Customer.create,
        name=agent_name,
        description=f"Lithtrix agent {agent_id}",
        metadata={"agent_id": agent_id},
        idempotency_key=idempotency_key,
    )


def payment_method_attach(
    *, payment_method_id: str, customer_id: str, idempotency_key: str
) -> stripe.PaymentMethod:
    """Attach a PaymentMethod to a customer: 402 when declined, 400 when Stripe does not know it."""
    with translated_errors("payment_method.attach", missing_field="payment_method_id"):
        return stripe.PaymentMethod.attach(
            payment_method_id,
            customer=customer_id,
            api_key=api_key(),
            idempotency_key=idempotency_key,
        )


def customer_set_default_payment_method(
    *, customer_id: str, payment_method_id: str
) -> stripe.Customer:
    return _call(
        "customer.update",
        stripe.Customer.modify,
        customer_id,
        invoice_settings={"default_payment_method": payment_method_id},
    )


def subscriptions_of(*, customer_id: str) -> list[stripe.Subscription]:
    """All of a customer's subscriptions, ended ones included."""
    with translated_errors("subscription.list"):
        page = stripe.Subscription.list(
            customer=customer_id, status="all", limit=100, api_key=api_key()
        )
        return list(page.auto_paging_iter())


def subscription_create(
    *, customer_id: str, price_id: str, agent_id: str, idempotency_key: str
) -> stripe.Subscription:
    """Subscribe a customer to a price; the first invoice is paid now or nothing is created.

    error_if_incomplete: a failed first payment is a decline (402), not an
    incomplete subscription left behind.
    """
    return _call(
        "subscription.create",
        stripe.Subscription.create,
        customer=customer_id,
        items=[{"price": price_id}],
        payment_behavior="error_if_incomplete",
        metadata={"agent_id": agent_id},
        idempotency_key=idempotency_key,
    )


def subscription_retrieve(*, subscription_id: str) -> stripe.Subscription:
    return _call("subscription.retrieve", stripe.Subscription.retrieve, subscription_id)


def subscription_cancel_at_period_end(*, subscription_id: str, cancel: bool) -> stripe.Subscription:
    """Set (True) or withdraw (False) the cancellation at the end of the paid period.

    Setting a flag is idempotent by nature; no fixed idempotency key across
    requests (it would replay a stale answer after a cancel -> resume -> cancel).
    stripe-python still sends one key per call for its own retries.
    """
    return _call(
        "subscription.update",
        stripe.Subscription.modify,
        subscription_id,
        cancel_at_period_end=cancel,
    )


def subscription_cancel_now(*, subscription_id: str, idempotency_key: str) -> stripe.Subscription:
    """End a subscription at once (DELETE /v1/subscriptions/<id>)."""
    return _call(
        "subscription.cancel",
        stripe.Subscription.cancel,
        subscription_id,
        idempotency_key=idempotency_key,
    )


def invoice_retrieve(*, invoice_id: str) -> stripe.Invoice:
    return _call("invoice.retrieve", stripe.Invoice.retrieve, invoice_id)


def invoice_pay(*, invoice_id: str, payment_method_id: str) -> stripe.Invoice:
    """Pay an open invoice with a payment method; a decline raises PaymentFailedError."""
    return _call("invoice.pay", stripe.Invoice.pay, invoice_id, payment_method=payment_method_id)


def webhook_endpoint_create(*, url: str, enabled_events: list[str], metadata: dict) -> Any:
    return _call(
        "webhook_endpoint.create",
        stripe.WebhookEndpoint.create,
        url=url,
        enabled_events=enabled_events,
        metadata=metadata,
        # Events in the API version this library speaks.
        api_version=stripe.api_version,
    )


def pro_plan_create(*, plan_id: str, amount: int, currency: str, product_name: str) -> Any:
    """A monthly Plan (a legacy Price: its id goes wherever a price id goes) and its Product.

    For Stripe-compatible local servers, which have Plans but no Prices.
    """
    product = _call(
        "product.create",
        stripe.Product.create,
        name=product_name,
        idempotency_key=f"lithtrix-product-{plan_id}",
    )
    return _call(
        "plan.create",
        stripe.Plan.create,
        id=plan_id,
        product=product.id,
        amount=amount,
        currency=currency,
        interval="month",
        idempotency_key=f"lithtrix-plan-{plan_id}",
    )


def plan_retrieve(*, plan_id: str) -> Any:
    # Before the local Pro plan is made, its 404 is the expected answer.
    with translated_errors("plan.retrieve", missing_is_expected=True):
        return stripe.Plan.retrieve(plan_id, api_key=api_key())
