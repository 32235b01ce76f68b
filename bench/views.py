"""Throwaway views that set the scale: what plain Django and plain DRF cost."""

from django.http import HttpRequest, JsonResponse
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView


def bare(request: HttpRequest) -> JsonResponse:
    """The ceiling: a Django view answering JSON, through the same middleware."""
    return JsonResponse({"ok": True})


class PlainView(APIView):
    """DRF's own cost: an APIView with no authentication, permission or throttle."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class TokenView(APIView):
    """DRF's TokenAuthentication: one indexed query on the token, nothing else."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes: list = []

    def get(self, request: Request) -> Response:
        return Response({"user": request.user.username})


class TokenThrottledView(TokenView):
    """The same with DRF's UserRateThrottle on the Redis cache."""

    throttle_classes = [UserRateThrottle]
