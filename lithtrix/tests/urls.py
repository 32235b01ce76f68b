"""Routes that exist only in the error-handling tests."""

from django.urls import path
from rest_framework import viewsets
from rest_framework.response import Response

from lithtrix.urls import urlpatterns as project_urlpatterns


class BrokenViewSet(viewsets.ViewSet):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_scope = "register"

    def list(self, request):
        secret = "ltx_this-must-never-leak"  # noqa: F841 - shows locals don't reach the body
        raise RuntimeError("boom with details that must not leak")


def broken_plain_view(request):
    raise RuntimeError("plain view boom")


class EchoViewSet(viewsets.ViewSet):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_scope = "register"

    def create(self, request):
        return Response({"received": request.data})


urlpatterns = [
    path("v1/test/broken", BrokenViewSet.as_view({"get": "list"})),
    path("v1/test/plain-broken", broken_plain_view),
    path("v1/test/echo", EchoViewSet.as_view({"post": "create"})),
    *project_urlpatterns,
]

handler400 = "lithtrix.core.responses.bad_request_view"
handler403 = "lithtrix.core.responses.permission_denied_view"
handler404 = "lithtrix.core.responses.not_found_view"
handler500 = "lithtrix.core.responses.server_error_view"
