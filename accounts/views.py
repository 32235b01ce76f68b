from drf_spectacular.utils import extend_schema
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
from lithtrix.http import client_ip
from lithtrix.openapi import error_response

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
            409: error_response("AGENT_ALREADY_EXISTS: use key rotation instead."),
        },
        extensions={"x-rate-limit": "per client IP"},
        tags=["accounts"],
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
        tags=["accounts"],
    )
    def retrieve(self, request: Request) -> Response:
        return Response(agent_profile(request.user))
