from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.selectors import agent_profile
from accounts.serializers import (
    AgentProfileSerializer,
    AgentRegisteredSerializer,
    AgentRegisterSerializer,
)
from accounts.services import agent_register
from lithtrix.errors import AgentAlreadyExistsError, ValidationError
from lithtrix.http import client_ip
from lithtrix.openapi import EXAMPLE_AGENT_ID, EXAMPLE_API_KEY, errors

REGISTERED_MESSAGE = "Store this key securely. It cannot be retrieved again."


class RegisterViewSet(viewsets.ViewSet):
    """POST /v1/register — an agent signs itself up and gets its first key."""

    authentication_classes: list = []
    permission_classes: list = []

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


class MeViewSet(viewsets.ViewSet):
    """GET /v1/me — the authenticated agent's profile."""

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
        return Response(agent_profile(request.user))
