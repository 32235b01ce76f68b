"""GET /v1/billing: tier, usage and the Stripe side, composed from metering and payments."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from billing import selectors
from billing.metering.serializers import BillingSerializer
from keys.requests import request_agent


class BillingViewSet(viewsets.ViewSet):
    """GET /v1/billing — tier, lifetime calls and the cap. Never metered."""

    @extend_schema(
        summary="Tier, lifetime metered calls and the cap",
        responses={200: BillingSerializer},
        examples=[
            OpenApiExample(
                "A Free agent",
                value={
                    "tier": "free",
                    "calls_total": 42,
                    "call_limit": 300,
                    "over_limit": False,
                    "stripe_customer_id": None,
                },
                response_only=True,
            ),
            OpenApiExample(
                "A Pro agent",
                value={
                    "tier": "pro",
                    "calls_total": 1280,
                    "call_limit": None,
                    "over_limit": False,
                    "stripe_customer_id": "cus_Q8mZ3kT1vN5xRb",
                },
                response_only=True,
            ),
        ],
    )
    def retrieve(self, request: Request) -> Response:
        return Response(
            BillingSerializer(selectors.billing_summary(agent=request_agent(request))).data
        )
