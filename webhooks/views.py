"""/v1/webhook: the agent's webhook endpoint, and /v1/webhook/deliveries."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from idempotency.views import IdempotentViewSetMixin, idempotent
from keys.requests import request_agent
from lithtrix.core.exceptions import NotFoundError, ValidationError
from lithtrix.core.openapi import errors
from lithtrix.core.parsers import require_no_body
from webhooks.selectors import webhook_deliveries_recent, webhook_of
from webhooks.serializers import (
    EVENT_TYPES,
    WebhookDeliveryListSerializer,
    WebhookSecretSerializer,
    WebhookSerializer,
    WebhookSetSerializer,
)
from webhooks.services import webhook_delete, webhook_set

EXAMPLE_URL = "https://agent.example.com/lithtrix/webhook"


class WebhookViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """The agent's one webhook endpoint: PUT sets it (and its secret), GET, DELETE."""

    @extend_schema(
        summary="Set the webhook URL; answers a new signing secret, shown once",
        description=(
            "Deliveries follow the Standard Webhooks specification (webhook-id, "
            "webhook-timestamp, webhook-signature `v1,<base64 HMAC-SHA256>`). PUT again "
            "to change the URL or rotate the secret; it also re-enables a disabled "
            "endpoint. The URL must be https and resolve to a public address."
        ),
        request=WebhookSetSerializer,
        # Whether a well-formed URL is refused depends on what its name resolves to.
        extensions={"x-state-decides": [400]},
        responses={
            200: WebhookSecretSerializer,
            **errors(ValidationError(details={"url": ["Must be an https URL."]})),
        },
        examples=[
            OpenApiExample("Set", value={"url": EXAMPLE_URL}, request_only=True),
            OpenApiExample(
                "The secret (shown once)",
                value={
                    "url": EXAMPLE_URL,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "events": EVENT_TYPES,
                },
                response_only=True,
            ),
        ],
    )
    @idempotent(min_key_length=32)
    def update(self, request: Request) -> Response:
        serializer = WebhookSetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = webhook_set(
            agent=request_agent(request), url=serializer.validated_data["url"]
        )
        body = {"url": endpoint.url, "secret": secret, "events": EVENT_TYPES}
        return Response(WebhookSecretSerializer(body).data)

    @extend_schema(
        summary="The webhook endpoint (never its secret)",
        responses={200: WebhookSerializer, **errors(NotFoundError())},
        examples=[
            OpenApiExample(
                "Set, delivering",
                value={
                    "url": EXAMPLE_URL,
                    "events": EVENT_TYPES,
                    "created_at": "2026-03-14T10:30:00Z",
                    "disabled_at": None,
                },
                response_only=True,
            )
        ],
    )
    def retrieve(self, request: Request) -> Response:
        endpoint = webhook_of(agent=request_agent(request))
        if endpoint is None:
            raise NotFoundError("No webhook is set: PUT /v1/webhook sets one.")
        body = {
            "url": endpoint.url,
            "events": EVENT_TYPES,
            "created_at": endpoint.created_at,
            "disabled_at": endpoint.disabled_at,
        }
        return Response(WebhookSerializer(body).data)

    @extend_schema(
        summary="Remove the webhook endpoint; pending deliveries are dropped",
        request=None,
        # 404 when the agent has none (already removed, or never set).
        extensions={"x-state-decides": [404], "x-no-body": True},
        responses={204: None, **errors(NotFoundError())},
    )
    @idempotent()
    def destroy(self, request: Request) -> Response:
        require_no_body(request)
        if not webhook_delete(agent=request_agent(request)):
            raise NotFoundError("No webhook is set.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="The last 50 deliveries, newest first",
        responses={200: WebhookDeliveryListSerializer},
        examples=[
            OpenApiExample(
                "One delivered on the third attempt, one waiting for its retry",
                value={
                    "deliveries": [
                        {
                            "id": "whd_9c1f2e7a4b3d5c6e8f0a1b2c",
                            "event_id": "evt_4f2a9c1e7b3d5a6c8e0f1a2b",
                            "type": "usage.near_limit",
                            "status": "pending",
                            "attempts": 2,
                            "last_status_code": 503,
                            "next_attempt_at": "2026-03-14T10:41:05Z",
                        },
                        {
                            "id": "whd_1a2b3c4d5e6f7a8b9c0d1e2f",
                            "event_id": "evt_0e1d2c3b4a5f6e7d8c9b0a1f",
                            "type": "key.leaked",
                            "status": "succeeded",
                            "attempts": 3,
                            "last_status_code": 200,
                            "next_attempt_at": None,
                        },
                    ]
                },
                response_only=True,
            )
        ],
    )
    def deliveries(self, request: Request) -> Response:
        deliveries = webhook_deliveries_recent(agent=request_agent(request))
        return Response(WebhookDeliveryListSerializer({"deliveries": deliveries}).data)
