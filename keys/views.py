"""/v1/keys: rotate, list, revoke (the agent's own keys) and leaked (secret scanners)."""

from __future__ import annotations

import json

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from billing.metering.ratelimit import rate_limit
from idempotency.views import IdempotentViewSetMixin, idempotent
from keys import secret_scanning
from keys.selectors import agent_working_keys
from keys.serializers import (
    KeyListSerializer,
    KeyRevokedSerializer,
    KeyRotatedSerializer,
    KeyRotateSerializer,
    LeakLabelSerializer,
    LeakReportSerializer,
)
from keys.services import (
    LeakReport,
    api_key_revoke_working,
    api_key_rotate,
    api_keys_report_leaked,
)
from lithtrix.errors import InvalidApiKeyError, ValidationError
from lithtrix.http import client_ip
from lithtrix.openapi import error_response


class KeyViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """The authenticated agent's keys: POST rotate, GET list, POST revoke."""

    @extend_schema(
        summary="Issue a new key; the presented one stops working now or after an overlap",
        request=KeyRotateSerializer,
        responses={200: KeyRotatedSerializer},
        tags=["keys"],
    )
    @idempotent(min_key_length=32)
    def rotate(self, request: Request) -> Response:
        serializer = KeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rotation = api_key_rotate(
            api_key=request.auth,
            overlap_seconds=serializer.validated_data["previous_key_expires_in"],
            ip=client_ip(request),
        )
        body = {
            "api_key": rotation.api_key,
            "previous_key_expires_at": rotation.previous_key_expires_at,
        }
        return Response(KeyRotatedSerializer(body).data)

    @extend_schema(
        summary="The agent's keys that still work, newest first (prefixes only)",
        responses={200: KeyListSerializer},
        tags=["keys"],
    )
    def working(self, request: Request) -> Response:
        # Not named "list": the answer is one object, not a list of keys.
        keys = agent_working_keys(agent=request.user)
        return Response(KeyListSerializer({"keys": keys}).data)

    @extend_schema(
        summary="Revoke the presented key at once",
        request=None,
        responses={200: KeyRevokedSerializer},
        tags=["keys"],
    )
    @idempotent()
    def revoke(self, request: Request) -> Response:
        api_key = request.auth
        if not api_key_revoke_working(api_key=api_key, ip=client_ip(request)):
            raise InvalidApiKeyError()  # it stopped working while this request ran
        return Response(KeyRevokedSerializer({"revoked": api_key.prefix}).data)


class SecretScanningThrottle(BaseThrottle):
    """Per client IP, at its own (generous) rate: scanners report in bursts."""

    GROUP = "lithtrix.secret_scanning"

    def allow_request(self, request, view) -> bool:
        rate_limit(
            request, agent=None, group=self.GROUP, rate=settings.LITHTRIX_SECRET_SCANNING_RATE
        )
        return True


class LeakedKeysViewSet(viewsets.ViewSet):
    """POST /v1/keys/leaked — GitHub's secret-scanning partner endpoint."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [SecretScanningThrottle]

    @extend_schema(
        summary="Report leaked keys (GitHub secret-scanning partner protocol)",
        description=(
            "The body is signed by GitHub (ECDSA P-256 / SHA-256 over the raw body). "
            "Each reported token that is a working key is revoked at once."
        ),
        parameters=[
            OpenApiParameter(
                "Github-Public-Key-Identifier",
                location=OpenApiParameter.HEADER,
                required=True,
                description="Which of GitHub's published public keys signed the body.",
            ),
            OpenApiParameter(
                "Github-Public-Key-Signature",
                location=OpenApiParameter.HEADER,
                required=True,
                description="Base64 DER ECDSA signature of the raw body.",
            ),
        ],
        request=LeakReportSerializer(many=True),
        responses={
            200: LeakLabelSerializer(many=True),
            400: error_response("VALIDATION_ERROR: missing or bad signature, or a bad body."),
            503: error_response("SERVICE_UNAVAILABLE: GitHub's public keys cannot be fetched."),
        },
        extensions={"x-rate-limit": "per client IP (LITHTRIX_SECRET_SCANNING_RATE)"},
        tags=["keys"],
    )
    def create(self, request: Request) -> Response:
        body = request._request.body  # the raw bytes GitHub signed
        secret_scanning.verify_report(
            body=body,
            identifier=request.headers.get("Github-Public-Key-Identifier", ""),
            signature=request.headers.get("Github-Public-Key-Signature", ""),
        )
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("Malformed JSON body.") from None
        serializer = LeakReportSerializer(data=data, many=True)
        serializer.is_valid(raise_exception=True)
        reports = [
            LeakReport(
                token=item["token"], token_type=item["type"], url=item["url"], source=item["source"]
            )
            for item in serializer.validated_data
        ]
        labels = api_keys_report_leaked(reports=reports, ip=client_ip(request))
        return Response(LeakLabelSerializer(labels, many=True).data)
