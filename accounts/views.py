from drf_spectacular.utils import extend_schema
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
from lithtrix.http import client_ip
from lithtrix.openapi import error_response

REGISTERED_MESSAGE = "Store this key securely. It cannot be retrieved again."


class RegisterViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
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
        tags=["accounts"],
    )
    def retrieve(self, request: Request) -> Response:
        return Response(agent_profile(request.user))

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
            502: error_response("PAYMENT_PROVIDER_ERROR: Stripe failed; nothing changed."),
        },
        tags=["accounts"],
    )
    @idempotent()
    def destroy(self, request: Request) -> Response:
        serializer = AgentDeleteSerializer(data=request.data, context={"agent": request.user})
        serializer.is_valid(raise_exception=True)
        agent_delete(agent=request.user, actor=None)
        return Response(status=status.HTTP_204_NO_CONTENT)
