"""The project's routes plus probe views for the metering permission and opt-outs."""

from django.urls import path
from rest_framework import viewsets
from rest_framework.response import Response

from billing.permissions import Metered
from lithtrix.urls import urlpatterns as project_urlpatterns


class MeteredProbeViewSet(viewsets.ViewSet):
    permission_classes = [Metered]

    def list(self, request):
        return Response({"agent_id": str(request.user.pk)})


class UnlimitedProbeViewSet(viewsets.ViewSet):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def create(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("v1/test/metered", MeteredProbeViewSet.as_view({"get": "list"})),
    path("v1/test/unlimited", UnlimitedProbeViewSet.as_view({"post": "create"})),
    *project_urlpatterns,
]
