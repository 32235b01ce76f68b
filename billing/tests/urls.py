"""The project's routes plus probe views for the metering permission and opt-outs."""

from django.urls import path
from rest_framework import serializers, viewsets
from rest_framework.response import Response

from billing.metering.permissions import Metered
from lithtrix.urls import urlpatterns as project_urlpatterns


class ProbeSerializer(serializers.Serializer):
    note = serializers.CharField(required=False)


class MeteredProbeViewSet(viewsets.GenericViewSet):
    # Generic, so DRF's OPTIONS metadata checks permissions for its POST action too.
    permission_classes = [Metered]
    serializer_class = ProbeSerializer

    def list(self, request):
        return Response({"agent_id": str(request.user.pk)})

    def create(self, request):
        return Response({"created": True})


class UnlimitedProbeViewSet(viewsets.ViewSet):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def create(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("v1/test/metered", MeteredProbeViewSet.as_view({"get": "list", "post": "create"})),
    path("v1/test/unlimited", UnlimitedProbeViewSet.as_view({"post": "create"})),
    *project_urlpatterns,
]

handler403 = "lithtrix.core.responses.permission_denied_view"
