from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.selectors import agent_profile
from accounts.serializers import (
    AgentDeleteSerializer,
    AgentProfileSerializer,
    AgentRegisteredSerializer,
    AgentRegisterSerializer,
)
from accounts.services import agent_delete, agent_register
from idempotency.views import IdempotentViewSetMixin, idempotent
from keys.requests import request_agent
from lithtrix.core.exceptions import (
    AgentAlreadyExistsError,
    BillingInProgressError,
    BillingUnavailableError,
    PaymentProviderError,
    StripeCallsBusyError,
    ValidationError,
)
from lithtrix.core.http import client_ip
from lithtrix.core.openapi import EXAMPLE_AGENT_ID, EXAMPLE_API_KEY, errors

REGISTERED_MESSAGE = "Store this key securely. It cannot be retrieved again."


class RegisterViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """POST /v1/register — an agent signs itself up and gets its first key."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_scope = "register"

    @extend_schema(
        summary="Register an agent and get its first API key (shown once)",
        request=AgentRegisterSerializer,
        responses={
            201: AgentRegisteredSerializer,
            **errors(
                ValidationError(
                    details={"agent_name": ["Use 1-100 characters: letters, digits, '_' and '-'."]}
                ),
                AgentAlreadyExistsError,
            ),
        },
        examples=[
            OpenApiExample(
                "An agent signs up",
                value={"agent_name": "research-agent", "owner_identifier": "ops@example.com"},
                request_only=True,
            ),
            OpenApiExample(
                "Registered",
                value={
                    "api_key": EXAMPLE_API_KEY,
                    "agent_id": EXAMPLE_AGENT_ID,
                    "message": REGISTERED_MESSAGE,
                },
                response_only=True,
                status_codes=["201"],
            ),
        ],
        extensions={"x-rate-limit": "per client IP"},
    )
    @idempotent(min_key_length=32)
    def create(self, request: Request) -> Response:
        serializer = AgentRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        registration = agent_register(**serializer.validated_data, ip=client_ip(request))
        body = AgentRegisteredSerializer(
            {
                "api_key": registration.api_key,
                "agent_id": registration.agent.id,
                "message": REGISTERED_MESSAGE,
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class MeViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """GET /v1/me — the authenticated agent's profile; DELETE /v1/me — delete it."""

    @extend_schema(
        summary="The authenticated agent's profile",
        responses={200: AgentProfileSerializer},
        examples=[
            OpenApiExample(
                "A Free agent",
                value={
                    "agent_id": EXAMPLE_AGENT_ID,
                    "agent_name": "research-agent",
                    "owner_identifier": "ops@example.com",
                    "tier": "free",
                },
                response_only=True,
            )
        ],
    )
    def retrieve(self, request: Request) -> Response:
        return Response(agent_profile(request_agent(request)))

    @extend_schema(
        summary="Delete this agent: keys revoked, name and owner erased",
        description=(
            "Any Stripe subscription is cancelled first (Stripe failing: 502, nothing "
            "changed); then every key is revoked and agent_name and owner_identifier are "
            "replaced by a tombstone. Usage counts and audit rows are kept. The same "
            "(agent_name, owner_identifier) pair may register again as a new agent."
        ),
        request=AgentDeleteSerializer,
        responses={
            204: None,
            **errors(
                ValidationError(details={"confirm": ["Must be this agent's agent_name."]}),
                BillingInProgressError,
                PaymentProviderError,
                BillingUnavailableError,
                StripeCallsBusyError,
            ),
        },
        examples=[
            OpenApiExample(
                "Confirm with the agent's own name",
                value={"confirm": "research-agent"},
                request_only=True,
            ),
        ],
        # A well-formed confirm is refused (400) unless it is this agent's own name.
        # deploy/fuzz.py reads this.
        extensions={"x-state-decides": [400]},
    )
    @idempotent()
    def destroy(self, request: Request) -> Response:
        serializer = AgentDeleteSerializer(
            data=request.data, context={"agent": request_agent(request)}
        )
        serializer.is_valid(raise_exception=True)
        agent_delete(agent=request_agent(request), actor=None)
        return Response(status=status.HTTP_204_NO_CONTENT)
