"""The project's routes with GET /v1/me drawn by DRF alone (lithtrix/tests/test_plain.py)."""

from django.urls import path

from accounts.views import MeViewSet
from lithtrix.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("v1/me", MeViewSet.as_view({"get": "retrieve", "delete": "destroy"})),
    *project_urlpatterns,
]

handler400 = "lithtrix.core.responses.bad_request_view"
handler403 = "lithtrix.core.responses.permission_denied_view"
handler404 = "lithtrix.core.responses.not_found_view"
handler500 = "lithtrix.core.responses.server_error_view"
