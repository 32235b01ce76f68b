"""Service-level endpoints: the discovery document, the OpenAPI schema and its docs."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Tier
from lithtrix.capabilities import (
    SERVICE,
    CapabilitiesSerializer,
    _tier_document,
    capabilities_document,
)

# Registers the Bearer scheme for keys.authentication.ApiKeyAuthentication.
from lithtrix.openapi import AUTHORIZE_OPERATION, ApiKeyAuthenticationScheme  # noqa: F401


def _capabilities_example() -> dict:
    """The document as served, with three of its endpoints (the rest come from the schema)."""
    return {
        "service": SERVICE,
        "version": settings.SPECTACULAR_SETTINGS["VERSION"],
        "api_version": "v1",
        "documentation": {"openapi": "/v1/openapi.json", "docs": "/v1/docs"},
        "authentication": {
            "type": "http",
            "scheme": "bearer",
            "header": "Authorization",
            "format": "Bearer ltx_...",
            "obtain": "POST /v1/register",
            "rotate": "POST /v1/keys/rotate",
        },
        "limits": {tier: _tier_document(tier) for tier in Tier.values},
        "rate_limit_headers": ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
        "endpoints": [
            {
                "method": "POST",
                "path": "/v1/register",
                "summary": "Register an agent and get its first API key (shown once)",
                "authentication": "none",
                "metered": False,
            },
            {
                "method": "GET",
                "path": "/v1/me",
                "summary": "The authenticated agent's profile",
                "authentication": "bearer",
                "metered": False,
            },
            {
                "method": "GET",
                "path": "/v1/authorize",
                "summary": AUTHORIZE_OPERATION["summary"],
                "authentication": "bearer",
                "metered": True,
            },
        ],
    }


class CapabilitiesViewSet(viewsets.ViewSet):
    """GET /v1/capabilities: service, version, authentication, limits per tier, endpoints."""

    authentication_classes: list = []
    permission_classes: list = []
    # A static document, as cheap to serve as /healthz: not rate-limited.
    throttle_classes: list = []

    @extend_schema(
        summary="What this service offers and how to use it",
        responses={200: CapabilitiesSerializer},
        examples=[
            OpenApiExample("This service", value=_capabilities_example(), response_only=True)
        ],
    )
    def retrieve(self, request: Request) -> Response:
        return Response(capabilities_document())


class OpenApiSchemaView(SpectacularJSONAPIView):
    """GET /v1/openapi.json: the OpenAPI 3 schema."""

    throttle_classes: list = []


class ApiDocsView(SpectacularSwaggerView):
    """GET /v1/docs: Swagger UI over /v1/openapi.json, its assets served locally."""

    url_name = "openapi-schema"
    throttle_classes: list = []
