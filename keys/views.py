from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from keys.services import api_key_rotate
from lithtrix.http import client_ip
from lithtrix.openapi import EXAMPLE_ROTATED_KEY


class KeyViewSet(viewsets.ViewSet):
    """POST /v1/keys/rotate — a new key; the presented one stops working at once."""

    @extend_schema(
        summary="Issue a new key; the presented one stops working at once",
        request=None,
        responses={200: inline_serializer("RotatedKey", {"api_key": serializers.CharField()})},
        examples=[
            OpenApiExample(
                "The new key (shown once)",
                value={"api_key": EXAMPLE_ROTATED_KEY},
                response_only=True,
            )
        ],
    )
    def rotate(self, request: Request) -> Response:
        new_key = api_key_rotate(api_key=request.auth, ip=client_ip(request))
        return Response({"api_key": new_key})
