"""/v1/keys: rotate, list, revoke (the agent's own keys) and leaked (secret scanners)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from idempotency.views import IdempotentViewSetMixin, idempotent
from keys import secret_scanning
from keys.crypto import DISPLAY_PREFIX_LENGTH
from keys.requests import request_agent, request_api_key
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
from lithtrix.core.exceptions import InvalidApiKeyError, ValidationError
from lithtrix.core.http import client_ip
from lithtrix.core.openapi import EXAMPLE_API_KEY, EXAMPLE_ROTATED_KEY, errors
from lithtrix.core.parsers import json_loads_bounded, require_no_body

EXAMPLE_PREFIX = EXAMPLE_API_KEY[:DISPLAY_PREFIX_LENGTH]
EXAMPLE_ROTATED_PREFIX = EXAMPLE_ROTATED_KEY[:DISPLAY_PREFIX_LENGTH]


class KeyViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
    """The authenticated agent's keys: POST rotate, GET list, POST revoke."""

    @extend_schema(
        summary="Issue a new key; the presented one stops working now or after an overlap",
        description=(
            "Only the agent's current key can rotate (a key in its overlap window, or "
            "already replaced, gets 401). With `previous_key_expires_in` the presented "
            "key keeps working that many seconds, so running clients can switch over. "
            "At most `LITHTRIX_MAX_WORKING_KEYS` keys of an agent (5 by default) work at "
            "once: a rotation past it ends the oldest overlaps now and lists them in "
            "`overlap_ended`."
        ),
        request=KeyRotateSerializer,
        responses={
            200: KeyRotatedSerializer,
            **errors(
                ValidationError(
                    details={
                        "previous_key_expires_in": [
                            "Ensure this value is less than or equal to 604800."
                        ]
                    }
                )
            ),
        },
        examples=[
            OpenApiExample(
                "Keep the old key one hour",
                value={"previous_key_expires_in": 3600},
                request_only=True,
            ),
            OpenApiExample(
                "The new key (shown once); the old one works one more hour",
                value={
                    "api_key": EXAMPLE_ROTATED_KEY,
                    "previous_key_expires_at": "2026-03-14T11:30:00Z",
                    "overlap_ended": [],
                },
                response_only=True,
            ),
            OpenApiExample(
                "Past the bound of working keys: the oldest overlap ended now",
                value={
                    "api_key": EXAMPLE_ROTATED_KEY,
                    "previous_key_expires_at": "2026-03-21T10:30:00Z",
                    "overlap_ended": [
                        {"prefix": EXAMPLE_PREFIX, "created_at": "2026-02-02T08:15:00Z"}
                    ],
                },
                response_only=True,
            ),
        ],
    )
    @idempotent(min_key_length=32)
    def rotate(self, request: Request) -> Response:
        serializer = KeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rotation = api_key_rotate(
            api_key=request_api_key(request),
            overlap_seconds=serializer.validated_data["previous_key_expires_in"],
            ip=client_ip(request),
        )
        body = {
            "api_key": rotation.api_key,
            "previous_key_expires_at": rotation.previous_key_expires_at,
            "overlap_ended": rotation.overlap_ended,
        }
        return Response(KeyRotatedSerializer(body).data)

    @extend_schema(
        summary="The agent's keys that still work, newest first (prefixes only)",
        responses={200: KeyListSerializer},
        examples=[
            OpenApiExample(
                "Just rotated, the old key in its overlap hour",
                value={
                    "keys": [
                        {
                            "prefix": EXAMPLE_ROTATED_PREFIX,
                            "created_at": "2026-03-14T10:30:00Z",
                            "expires_at": None,
                            "current": True,
                        },
                        {
                            "prefix": EXAMPLE_PREFIX,
                            "created_at": "2026-02-02T08:15:00Z",
                            "expires_at": "2026-03-14T11:30:00Z",
                            "current": False,
                        },
                    ]
                },
                response_only=True,
            )
        ],
    )
    def working(self, request: Request) -> Response:
        # Not named "list": the answer is one object, not a list of keys.
        keys = agent_working_keys(agent=request_agent(request))
        return Response(KeyListSerializer({"keys": keys}).data)

    @extend_schema(
        summary="Revoke the presented key at once",
        description=(
            "Whichever of the agent's keys is presented stops working now; no body. "
            "An agent can lock itself out on purpose (a leaked key is killed by "
            "whoever holds it); support can reissue."
        ),
        request=None,
        extensions={"x-no-body": True},
        responses={200: KeyRevokedSerializer},
        examples=[OpenApiExample("Revoked", value={"revoked": EXAMPLE_PREFIX}, response_only=True)],
    )
    @idempotent()
    def revoke(self, request: Request) -> Response:
        require_no_body(request)
        api_key = request_api_key(request)
        if not api_key_revoke_working(api_key=api_key, ip=client_ip(request)):
            raise InvalidApiKeyError()  # it stopped working while this request ran
        return Response(KeyRevokedSerializer({"revoked": api_key.prefix}).data)


class LeakedKeysViewSet(viewsets.ViewSet):
    """POST /v1/keys/leaked — GitHub's secret-scanning partner endpoint."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_scope = "secret_scanning"  # its own (generous) rate: scanners report in bursts

    # For GitHub, not for agents: left out of the API description (as Stripe's
    # webhook is); the README documents the protocol and the key pattern.
    @extend_schema(exclude=True)
    def create(self, request: Request) -> Response:
        body = request._request.body  # the raw bytes GitHub signed
        secret_scanning.verify_report(
            body=body,
            identifier=request.headers.get("Github-Public-Key-Identifier", ""),
            signature=request.headers.get("Github-Public-Key-Signature", ""),
        )
        data = json_loads_bounded(body)  # the same bounds as every other JSON body
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
