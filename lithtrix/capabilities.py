"""GET /v1/capabilities: what this service is and how an agent uses it, in one read.

A discovery document for agents: service and version, how to authenticate, the
limits of each tier (from settings, via billing.metering.tiers) and every endpoint (from the
OpenAPI schema, so it cannot drift from what is served).
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from rest_framework import serializers

from accounts.models import Tier
from billing.metering.tiers import tier_limits
from lithtrix.core.ratelimit import parse_rate
from lithtrix.openapi import SCHEMA_LOCK, _is_keyed

SERVICE = "lithtrix"


def _tier_document(tier: str) -> dict[str, Any]:
    limits = tier_limits(tier)
    requests, period = parse_rate(limits.rate)
    return {
        "call_limit": limits.call_limit,
        "rate": limits.rate,
        "requests_per_period": requests,
        "period_seconds": period,
    }


@functools.cache
def _endpoints() -> tuple[dict[str, Any], ...]:
    from drf_spectacular.generators import SchemaGenerator

    with SCHEMA_LOCK:
        schema = SchemaGenerator().get_schema(request=None, public=True)

    endpoints = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "authentication": "bearer" if _is_keyed(operation) else "none",
                    "metered": bool(operation.get("x-metered", False)),
                }
            )
    return tuple(endpoints)


def capabilities_document(endpoints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The discovery document; ``endpoints`` (for the schema's example) replaces the
    list taken from the OpenAPI schema."""
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
        "endpoints": list(_endpoints()) if endpoints is None else endpoints,
    }


class TierLimitsSerializer(serializers.Serializer):
    call_limit = serializers.IntegerField(
        allow_null=True, help_text="Lifetime metered calls; null = unlimited."
    )
    rate = serializers.CharField(help_text='Requests per period, e.g. "60/m".')
    requests_per_period = serializers.IntegerField()
    period_seconds = serializers.IntegerField()


class LimitsSerializer(serializers.Serializer):
    free = TierLimitsSerializer()
    pro = TierLimitsSerializer()


class AuthenticationSerializer(serializers.Serializer):
    type = serializers.CharField()
    scheme = serializers.CharField()
    header = serializers.CharField()
    format = serializers.CharField()
    obtain = serializers.CharField()
    rotate = serializers.CharField()


class DocumentationSerializer(serializers.Serializer):
    openapi = serializers.CharField()
    docs = serializers.CharField()


class EndpointSerializer(serializers.Serializer):
    method = serializers.CharField()
    path = serializers.CharField()
    summary = serializers.CharField(allow_blank=True)
    authentication = serializers.ChoiceField(choices=["bearer", "none"])
    metered = serializers.BooleanField()


class CapabilitiesSerializer(serializers.Serializer):
    service = serializers.CharField()
    version = serializers.CharField()
    api_version = serializers.CharField()
    documentation = DocumentationSerializer()
    authentication = AuthenticationSerializer()
    limits = LimitsSerializer()
    rate_limit_headers = serializers.ListField(child=serializers.CharField())
    endpoints = EndpointSerializer(many=True)
