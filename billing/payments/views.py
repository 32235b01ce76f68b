"""/v1/billing: config, setup, cancel; the Stripe webhook."""

from __future__ import annotations

import logging

import stripe
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from djstripe.views import ProcessWebhookView
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from billing.metering.tiers import tier_limits
from billing.payments import services as payments
from billing.payments import stripe_client, webhooks
from billing.payments.serializers import (
    BillingCancelledSerializer,
    BillingConfigSerializer,
    BillingSetupSerializer,
    BillingUpgradedSerializer,
)
from idempotency.views import IdempotentViewSetMixin, idempotent
from keys.requests import request_agent
from lithtrix import errors, openapi
from lithtrix.errors import BillingInProgressError
from lithtrix.responses import json_response

logger = logging.getLogger("billing.payments.views")

UPGRADED_MESSAGE = "Upgrade successful. Your account is now on the Pro tier."
CANCEL_MESSAGES = {
    "pending": "Cancellation scheduled. Your account stays on Pro until cancel_at, then "
    "moves to Free. POST /v1/billing/setup before then to keep Pro.",
    "free": "Your account is on the Free tier.",
}


class BillingConfigViewSet(viewsets.ViewSet):
    """GET /v1/billing/config — the publishable key a client creates its PaymentMethod with."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_scope = "billing_config"

    @extend_schema(
        summary="The Stripe publishable key, to create a PaymentMethod client-side",
        responses={200: BillingConfigSerializer, **openapi.errors(errors.BillingUnavailableError)},
        examples=[
            OpenApiExample(
                "Stripe test mode",
                value={"stripe_publishable_key": "pk_test_51Q8mZ3kT1vN5xRbLw2Yh7Gd"},
                response_only=True,
            )
        ],
    )
    def retrieve(self, request: Request) -> Response:
        body = {"stripe_publishable_key": stripe_client.publishable_key()}
        return Response(BillingConfigSerializer(body).data)


class BillingSetupViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """POST /v1/billing/setup — attach a PaymentMethod and move to Pro."""

    @extend_schema(
        summary="Attach a Stripe PaymentMethod and upgrade to Pro",
        request=BillingSetupSerializer,
        responses={
            200: BillingUpgradedSerializer,
            **openapi.errors(
                errors.ValidationError(
                    details={"payment_method_id": ["Stripe does not know this id."]}
                ),
                errors.PaymentFailedError("Your card was declined."),
                BillingInProgressError,
                errors.PaymentProviderError,
                errors.BillingUnavailableError,
            ),
        },
        examples=[
            OpenApiExample(
                "A test card",
                value={"payment_method_id": openapi.EXAMPLE_PAYMENT_METHOD},
                request_only=True,
            ),
            OpenApiExample(
                "Upgraded",
                value={"tier": "pro", "call_limit": None, "message": UPGRADED_MESSAGE},
                response_only=True,
            ),
        ],
        # Whether a well-formed id is accepted is Stripe's answer: unknown (400) or
        # declined (402). deploy/fuzz.py reads this.
        extensions={"x-stripe-decides": [400, 402]},
    )
    @idempotent()
    def create(self, request: Request) -> Response:
        serializer = BillingSetupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = payments.billing_setup(
            agent=request_agent(request),
            payment_method_id=serializer.validated_data["payment_method_id"],
        )
        body = {
            "tier": agent.tier,
            "call_limit": tier_limits(agent.tier).call_limit,
            "message": UPGRADED_MESSAGE,
        }
        return Response(BillingUpgradedSerializer(body).data)


class BillingCancelViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """POST /v1/billing/cancel — Pro -> Free (at the end of the paid period)."""

    @extend_schema(
        summary="Cancel Pro: at period end with a subscription, at once without",
        description=(
            "With a subscription, it is set to cancel at the end of the paid period: "
            "the agent stays Pro until `cancel_at` (GET /v1/billing shows it), and "
            "POST /v1/billing/setup before then keeps Pro. Card-on-file Pro: Free at "
            "once. Calling it again changes nothing; a Free agent gets `tier: free`. "
            "Stripe failing: 502, nothing changed."
        ),
        request=None,
        responses={
            200: BillingCancelledSerializer,
            **openapi.errors(
                BillingInProgressError,
                errors.PaymentProviderError,
                errors.BillingUnavailableError,
            ),
        },
        examples=[
            OpenApiExample(
                "Pro until the end of the paid period",
                value={
                    "tier": "pro",
                    "cancel_at": "2026-04-14T10:30:00Z",
                    "message": CANCEL_MESSAGES["pending"],
                },
                response_only=True,
            ),
            OpenApiExample(
                "Free (no subscription, or already Free)",
                value={"tier": "free", "cancel_at": None, "message": CANCEL_MESSAGES["free"]},
                response_only=True,
            ),
        ],
    )
    @idempotent()
    def create(self, request: Request) -> Response:
        cancellation = payments.billing_cancel(agent=request_agent(request))
        body = {
            "tier": cancellation.tier,
            "cancel_at": cancellation.cancel_at,
            "message": CANCEL_MESSAGES["pending" if cancellation.cancel_at else "free"]
            if cancellation.tier == "pro"
            else CANCEL_MESSAGES["free"],
        }
        return Response(BillingCancelledSerializer(body).data)


_djstripe_webhook_view = ProcessWebhookView.as_view()


@csrf_exempt
def stripe_webhook_view(request: HttpRequest) -> HttpResponse:
    """POST /v1/billing/webhook — dj-stripe's signed webhook view for the configured endpoint.

    The endpoint is the WebhookEndpoint row (manage.py billing_webhook_endpoint) whose
    secret signed the request. Answers in the API's envelope; dj-stripe's own URL
    (/stripe/webhook/<uuid>) works too.
    """
    # dj-stripe lets this header replace the endpoint's secret when DEBUG is on
    # (for the Stripe CLI); on this public URL it would let anyone sign events.
    request.META.pop("HTTP_X_DJSTRIPE_WEBHOOK_SECRET", None)
    if request.method != "POST":
        return errors.api_error_response(
            errors.MethodNotAllowedError(
                f"Method {request.method} not allowed.", headers={"Allow": "POST"}
            ),
            request,
        )
    if "stripe-signature" not in request.headers:
        return errors.api_error_response(
            errors.ValidationError("Missing Stripe-Signature header."), request
        )
    endpoint = webhooks.endpoint_signed_for(
        payload=request.body, signature=request.headers["stripe-signature"]
    )
    if endpoint is None:
        return errors.api_error_response(
            errors.ValidationError("The Stripe signature does not match."), request
        )
    try:
        # dj-stripe re-fetches the event's object: the same deadline as any Stripe call.
        with stripe_client.deadline():
            response = _djstripe_webhook_view(request, uuid=endpoint.djstripe_uuid)
    except Exception as exc:
        return _webhook_failure_response(request, exc)
    if response.status_code == 400:
        return errors.api_error_response(
            errors.ValidationError("The Stripe signature does not match."), request
        )
    return response


def _stripe_cause(exc: BaseException) -> stripe.StripeError | None:
    """The Stripe error behind ``exc`` (dj-stripe may raise it wrapped)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, stripe.StripeError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _webhook_failure_response(request: HttpRequest, exc: Exception) -> HttpResponse:
    """What Stripe is told when an event could not be processed (dj-stripe rolled it back).

    - Stripe no longer has the object (404): nothing to do, 200, so Stripe does not
      retry for days; one log line.
    - Any other Stripe failure (unreachable, 5xx, deadline, an answer dj-stripe
      cannot use): 503 envelope with Retry-After, so Stripe retries later.
    - Anything else is a bug: 500 envelope, logged with its traceback.
    """
    payload = webhooks.event_summary(request.body)
    cause = _stripe_cause(exc)
    if cause is not None and (cause.http_status == 404 or cause.code == "resource_missing"):
        logger.warning(
            "Stripe event %s (%s): its object is gone from Stripe; acknowledged, nothing done",
            payload["id"],
            payload["type"],
        )
        return json_response({"received": True, "processed": False, "reason": "object_gone"})
    if cause is not None:
        logger.warning(
            "Stripe event %s (%s) not processed, Stripe will retry: %s http_status=%s",
            payload["id"],
            payload["type"],
            type(cause).__name__,
            cause.http_status,
        )
        return errors.api_error_response(
            errors.ServiceUnavailableError(
                "Stripe could not be reached to confirm this event; retry later.",
                headers={"Retry-After": "60"},
            ),
            request,
        )
    logger.exception("Stripe event %s (%s) processing failed", payload["id"], payload["type"])
    return errors.api_error_response(errors.InternalError(), request)
