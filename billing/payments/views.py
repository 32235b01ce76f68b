"""GET /v1/billing/config, POST /v1/billing/setup, POST /v1/billing/webhook."""

from __future__ import annotations

import logging

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
    BillingConfigSerializer,
    BillingSetupSerializer,
    BillingUpgradedSerializer,
)
from lithtrix import errors, openapi

logger = logging.getLogger("billing.payments.views")

UPGRADED_MESSAGE = "Upgrade successful. Your account is now on the Pro tier."


class BillingConfigViewSet(viewsets.ViewSet):
    """GET /v1/billing/config — the publishable key a client creates its PaymentMethod with."""

    authentication_classes: list = []
    permission_classes: list = []

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


class BillingSetupViewSet(viewsets.ViewSet):
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
    def create(self, request: Request) -> Response:
        serializer = BillingSetupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = payments.billing_setup(
            agent=request.user, payment_method_id=serializer.validated_data["payment_method_id"]
        )
        body = {
            "tier": agent.tier,
            "call_limit": tier_limits(agent.tier).call_limit,
            "message": UPGRADED_MESSAGE,
        }
        return Response(BillingUpgradedSerializer(body).data)


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
        response = _djstripe_webhook_view(request, uuid=endpoint.djstripe_uuid)
    except Exception:
        logger.exception("Stripe webhook processing failed; Stripe will retry")
        return errors.api_error_response(errors.InternalError(), request)
    if response.status_code == 400:
        return errors.api_error_response(
            errors.ValidationError("The Stripe signature does not match."), request
        )
    return response
