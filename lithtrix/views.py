"""Service-level endpoints: the discovery document, the OpenAPI schema and its docs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework import viewsets
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lithtrix.capabilities import (
    CapabilitiesSerializer,
    capabilities_document,
)

# Registers the Bearer scheme for keys.authentication.ApiKeyAuthentication.
from lithtrix.openapi import (  # noqa: F401
    AUTHORIZE_OPERATION,
    SCHEMA_LOCK,
    ApiKeyAuthenticationScheme,
)


def _capabilities_example() -> dict:
    """The document as served, with three of its endpoints (the rest come from the schema)."""
    return capabilities_document(
        endpoints=[
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
        ]
    )


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


# The rendered schema per URLconf: built on the first request of each process
# (about 100 ms and 140 kB), then served as bytes.
_rendered_schemas: dict[str, tuple[bytes, dict[str, str]]] = {}


@receiver(setting_changed)
def _forget_rendered_schemas(**kwargs: Any) -> None:
    _rendered_schemas.clear()  # tests change settings the schema may depend on


def _answer_json(request: Request) -> None:
    request.accepted_renderer = JSONRenderer()
    request.accepted_media_type = JSONRenderer.media_type


class DocumentView(APIView):
    """A view whose renderer draws one document: anything else it answers is JSON.

    The document's renderer cannot draw the envelope (the Swagger page's template
    renderer answered a 405 as text/html) nor OPTIONS' metadata (it raised
    TemplateDoesNotExist: a 500 anyone could cause).
    """

    # As DRF declares it (its stubs narrow Django's HttpRequest the same way).
    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        _answer_json(request)
        return super().options(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        _answer_json(self.request)
        return response


class OpenApiSchemaView(DocumentView, SpectacularJSONAPIView):
    """GET /v1/openapi.json: the OpenAPI 3 schema, built once per process."""

    throttle_scope = "openapi"

    @extend_schema(**SCHEMA_KWARGS)  # as drf-spectacular's own view declares it
    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        urlconf = str(getattr(request._request, "urlconf", None) or settings.ROOT_URLCONF)
        rendered = _rendered_schemas.get(urlconf)
        if rendered is None:
            with SCHEMA_LOCK:
                rendered = _rendered_schemas.get(urlconf)
                if rendered is None:
                    rendered = self._render(request, *args, **kwargs)
                    _rendered_schemas[urlconf] = rendered
        body, headers = rendered
        return HttpResponse(body, headers=headers)

    def _render(self, request: Request, *args: Any, **kwargs: Any) -> tuple[bytes, dict[str, str]]:
        response = super().get(request, *args, **kwargs)
        renderer = self.renderer_classes[0]()
        body = renderer.render(response.data, renderer.media_type, {"response": response})
        if isinstance(body, str):
            body = body.encode()
        headers = {
            "Content-Type": renderer.media_type,
            "Content-Disposition": response["Content-Disposition"],
        }
        return body, headers


class ApiDocsView(DocumentView, SpectacularSwaggerView):
    """GET /v1/docs: Swagger UI over /v1/openapi.json, its assets served locally."""

    url_name = "openapi-schema"
    throttle_classes: list = []
