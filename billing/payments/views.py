"""/v1/billing/config, /v1/billing/setup, /v1/billing/cancel (Stripe's webhook: webhooks.py)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from billing.metering.tiers import tier_limits
from billing.payments import stripe_client
from billing.payments.cancel import billing_cancel
from billing.payments.serializers import (
    BillingCancelledSerializer,
    BillingConfigSerializer,
    BillingSetupSerializer,
    BillingUpgradedSerializer,
)
from billing.payments.setup import billing_setup
from idempotency.views import IdempotentViewSetMixin, idempotent
from keys.requests import request_agent
from lithtrix.core import exceptions as errors
from lithtrix.core import openapi
from lithtrix.core.exceptions import BillingInProgressError
from lithtrix.core.parsers import require_no_body

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
                errors.StripeCallsBusyError,
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
        agent = billing_setup(
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
        extensions={"x-no-body": True},
        responses={
            200: BillingCancelledSerializer,
            **openapi.errors(
                BillingInProgressError,
                errors.PaymentProviderError,
                errors.BillingUnavailableError,
                errors.StripeCallsBusyError,
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
        require_no_body(request)
        cancellation = billing_cancel(agent=request_agent(request))
        body = {
            "tier": cancellation.tier,
            "cancel_at": cancellation.cancel_at,
            "message": CANCEL_MESSAGES["pending" if cancellation.cancel_at else "free"]
            if cancellation.tier == "pro"
            else CANCEL_MESSAGES["free"],
        }
        return Response(BillingCancelledSerializer(body).data)
