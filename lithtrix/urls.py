"""/v1 routes. Each maps one path to one viewset action; the rest of /v1 is a 404 envelope."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from accounts.selectors import agent_profile
from accounts.views import MeViewSet, RegisterViewSet
from billing.metering.views import UsageViewSet, authorize
from billing.payments.views import BillingCancelViewSet, BillingConfigViewSet, BillingSetupViewSet
from billing.payments.webhooks import stripe_webhook_view
from billing.views import BillingViewSet
from keys.views import KeyViewSet, LeakedKeysViewSet
from lithtrix.core import probes, responses
from lithtrix.plain import plain_get
from lithtrix.views import ApiDocsView, CapabilitiesViewSet, OpenApiSchemaView
from mail.views import unsubscribe
from webhooks.views import WebhookViewSet

v1 = [
    path("v1/register", RegisterViewSet.as_view({"post": "create"}), name="register"),
    # GET answered by lithtrix.plain without DRF's dispatch; DELETE and the rest by DRF.
    path(
        "v1/me",
        plain_get(MeViewSet.as_view({"get": "retrieve", "delete": "destroy"}), agent_profile),
        name="me",
    ),
    path("v1/keys", KeyViewSet.as_view({"get": "working"}), name="keys"),
    path("v1/keys/rotate", KeyViewSet.as_view({"post": "rotate"}), name="keys-rotate"),
    path("v1/keys/revoke", KeyViewSet.as_view({"post": "revoke"}), name="keys-revoke"),
    path("v1/keys/leaked", LeakedKeysViewSet.as_view({"post": "create"}), name="keys-leaked"),
    path("v1/billing", BillingViewSet.as_view({"get": "retrieve"}), name="billing"),
    path("v1/usage", UsageViewSet.as_view({"get": "retrieve"}), name="usage"),
    path("v1/authorize", authorize, name="authorize"),
    path(
        "v1/billing/config",
        BillingConfigViewSet.as_view({"get": "retrieve"}),
        name="billing-config",
    ),
    path("v1/billing/setup", BillingSetupViewSet.as_view({"post": "create"}), name="billing-setup"),
    path(
        "v1/billing/cancel", BillingCancelViewSet.as_view({"post": "create"}), name="billing-cancel"
    ),
    path("v1/billing/webhook", stripe_webhook_view, name="billing-webhook"),
    path(
        "v1/webhook",
        WebhookViewSet.as_view({"put": "update", "get": "retrieve", "delete": "destroy"}),
        name="webhook",
    ),
    path(
        "v1/webhook/deliveries",
        WebhookViewSet.as_view({"get": "deliveries"}),
        name="webhook-deliveries",
    ),
    path("v1/unsubscribe", unsubscribe, name="unsubscribe"),
]

# The service itself: discovery, API description, probes for load balancers.
service = [
    path("v1/capabilities", CapabilitiesViewSet.as_view({"get": "retrieve"}), name="capabilities"),
    path("v1/openapi.json", OpenApiSchemaView.as_view(), name="openapi-schema"),
    path("v1/docs", ApiDocsView.as_view(), name="docs"),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    # Answered by lithtrix.core.middleware.ProbeMiddleware before the Host check; routed
    # here too so the URL resolves like any other.
    path("metrics", probes.metrics_view, name="metrics"),
]

urlpatterns = [
    *v1,
    *service,
    path("admin/", admin.site.urls),
    # dj-stripe's webhook URL, stripe/webhook/<uuid> (one per WebhookEndpoint row), served
    # by the same view as /v1/billing/webhook.
    path("stripe/", include("billing.payments.urls", namespace="djstripe")),
    # Django's technical 404 page would answer here when DEBUG is on; the API never
    # answers with HTML, so unknown /v1 paths get the envelope in every mode, and
    # for every method (CSRF-exempt: there is nothing here to protect).
    re_path(r"^v1(?:/.*)?$", csrf_exempt(responses.not_found_view), name="unrouted"),
]

handler400 = responses.bad_request_view
handler403 = responses.permission_denied_view
handler404 = responses.not_found_view
handler500 = responses.server_error_view
