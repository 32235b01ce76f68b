"""Service-level endpoints: the discovery document, the OpenAPI schema and its docs."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from lithtrix.capabilities import CapabilitiesSerializer, capabilities_document

# Registers the Bearer scheme for keys.authentication.ApiKeyAuthentication.
from lithtrix.openapi import ApiKeyAuthenticationScheme  # noqa: F401


class CapabilitiesViewSet(viewsets.ViewSet):
    """GET /v1/capabilities: service, version, authentication, limits per tier, endpoints."""

    authentication_classes: list = []
    permission_classes: list = []
    # A static document, as cheap to serve as /healthz: not rate-limited.
    throttle_classes: list = []

    @extend_schema(
        summary="What this service offers and how to use it",
        responses={200: CapabilitiesSerializer},
        tags=["service"],
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
