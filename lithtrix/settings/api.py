"""The JSON API: DRF, tiers and limits, client IPs, the OpenAPI document."""

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

from lithtrix.settings.env import env_int, env_list

# --- Tiers and limits (see billing/metering/tiers.py) ----------------------------
LITHTRIX_FREE_CALL_LIMIT = env_int("LITHTRIX_FREE_CALL_LIMIT", 300)
# A key that authenticated within this many seconds is never refused by the
# auth_failures limit (THROTTLE_RATES below).
LITHTRIX_AUTH_SEEN_VALID_SECONDS = env_int("LITHTRIX_AUTH_SEEN_VALID_SECONDS", 7 * 24 * 3600)

# Networks of our own proxies (nginx, the metering gateway, a load balancer), comma
# separated. X-Forwarded-For is believed only from a peer in them, and only past
# their own hops (lithtrix/core/http.py); empty: the client IP is REMOTE_ADDR.
LITHTRIX_TRUSTED_PROXIES = env_list("LITHTRIX_TRUSTED_PROXIES", "")
try:
    for _network in LITHTRIX_TRUSTED_PROXIES:
        ipaddress.ip_network(_network, strict=False)
except ValueError as error:
    raise ImproperlyConfigured(f"LITHTRIX_TRUSTED_PROXIES: {error}.") from error
# A count believed X-Forwarded-For from any peer (a client straight at gunicorn
# could name any address); refuse to start rather than quietly drop it.
if os.environ.get("LITHTRIX_TRUSTED_PROXY_COUNT", "0").strip() not in {"", "0"}:
    raise ImproperlyConfigured(
        "LITHTRIX_TRUSTED_PROXY_COUNT is gone: list your proxies' networks in "
        "LITHTRIX_TRUSTED_PROXIES instead (e.g. 127.0.0.1 for nginx on this host)."
    )

# Metered path (README, "Benchmark"): key -> agent hints kept per process (0: off),
# and whether a metered call's commit waits for its WAL flush (on: durable).
LITHTRIX_KEY_HINTS = env_int("LITHTRIX_KEY_HINTS", 10000)
LITHTRIX_METER_SYNCHRONOUS_COMMIT = os.environ.get("LITHTRIX_METER_SYNCHRONOUS_COMMIT", "on")
# --- Account lifecycle ----------------------------------------------------------
# Keys of one agent that work at once, overlaps included: a rotation past it ends
# the oldest overlap first (keys/services.py).
LITHTRIX_MAX_WORKING_KEYS = env_int("LITHTRIX_MAX_WORKING_KEYS", 5)
# How long an answer is kept for replay under its Idempotency-Key (idempotency/).
LITHTRIX_IDEMPOTENCY_TTL_HOURS = env_int("LITHTRIX_IDEMPOTENCY_TTL_HOURS", 24)
# Idempotency-Keys one agent (or, for register, one client address) holds at once,
# kept answers and running requests alike; past it a new key is 429. Far above a
# day of rotations, billing calls or one host's registrations; it caps what a
# flood of keys can store.
LITHTRIX_IDEMPOTENCY_MAX_KEYS = env_int("LITHTRIX_IDEMPOTENCY_MAX_KEYS", 1000)
# The function idempotency asks which agent a spent key was issued to (a rotation,
# revocation or deletion retried with the key it killed gets its first answer back).
LITHTRIX_IDEMPOTENCY_CREDENTIAL_OWNER = "keys.authentication.spent_key_owner"
# Public keys that sign GitHub's secret-scanning reports (POST /v1/keys/leaked): a
# local file (tests, offline) wins over the URL (GitHub's published list).
LITHTRIX_SECRET_SCANNING_KEYS_URL = os.environ.get(
    "LITHTRIX_SECRET_SCANNING_KEYS_URL",
    "https://api.github.com/meta/public_keys/secret_scanning",
)
LITHTRIX_SECRET_SCANNING_KEYS_FILE = os.environ.get("LITHTRIX_SECRET_SCANNING_KEYS_FILE", "")

# Every rate limit, by DRF throttle scope ("N/period": s, m, h, d or a multiple,
# 100/5m). Per agent by tier (agent_free, agent_pro); every other scope per client
# IP, an IPv6 client by its /64 (lithtrix/core/ratelimit.py).
# Each scope's variable, read once (deploy/serve_check.py names it when its value is
# not a rate).
THROTTLE_RATE_VARIABLES = {
    "agent_free": ("LITHTRIX_FREE_RATE", "60/m"),
    "agent_pro": ("LITHTRIX_PRO_RATE", "600/m"),
    "register": ("LITHTRIX_REGISTER_RATE", "10/m"),
    # Reading the docs or the billing config does not use up registrations.
    "openapi": ("LITHTRIX_OPENAPI_RATE", "30/m"),
    "billing_config": ("LITHTRIX_BILLING_CONFIG_RATE", "30/m"),
    # Scanners report in bursts.
    "secret_scanning": ("LITHTRIX_SECRET_SCANNING_RATE", "600/m"),
    # Failed key authentications; past it, keys this service has not seen
    # authenticate recently get 429 without a database query (keys/authentication.py).
    "auth_failures": ("LITHTRIX_AUTH_FAILURE_RATE", "30/m"),
}
THROTTLE_RATES = {
    scope: os.environ.get(name, default)
    for scope, (name, default) in THROTTLE_RATE_VARIABLES.items()
}
# django-ratelimit (the per-IP scopes): the count is None only when its key expired
# between its two cache calls; then the request goes on uncounted. Cache errors
# reach ratelimit.py, which fails open or closed (LITHTRIX_RATE_LIMIT_ON_FAILURE).
RATELIMIT_FAIL_OPEN = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["keys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["lithtrix.core.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "lithtrix.core.responses.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Per agent (rate by tier) or per client IP in the view's throttle_scope; views
    # opt out with throttle_classes = [].
    "DEFAULT_THROTTLE_CLASSES": ["lithtrix.core.ratelimit.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": THROTTLE_RATES,
    "DEFAULT_SCHEMA_CLASS": "lithtrix.openapi.LithtrixAutoSchema",
}

# OpenAPI 3 schema at /v1/openapi.json, docs at /v1/docs (see lithtrix/openapi/).
# The API's public base URL, the schema's `servers` entry; relative by default (the
# host that served the schema).
LITHTRIX_PUBLIC_URL = os.environ.get("LITHTRIX_PUBLIC_URL", "/")
_QUICKSTART = f"""Accounts, API keys, metering and billing for AI agents.

## Quickstart for agents

1. **Register**: `POST /v1/register` with
   `{{"agent_name": "research-agent", "owner_identifier": "ops@example.com"}}`.
   The 201 answer carries your `api_key` (`ltx_` and 36 letters and digits), shown
   once: store it.
2. **Authenticate**: send `Authorization: Bearer ltx_...` on every other call
   (the **Authorize** button on this page does it for you).
3. **Check**: `GET /v1/me` answers your profile; you start on the `free` tier.
4. **Meter**: your gateway sends each incoming call's `Authorization` header to
   `GET /v1/authorize`; 200 lets it through and counts it. Free agents have
   {LITHTRIX_FREE_CALL_LIMIT} lifetime calls, then 402 `OVER_LIMIT`.
5. **Upgrade**: `GET /v1/billing/config` gives the Stripe publishable key; create a
   PaymentMethod with it (`pm_card_visa` in test mode) and `POST /v1/billing/setup`
   with `{{"payment_method_id": "pm_..."}}`: you are on Pro.

Every non-2xx answer is the error envelope
`{{"status": "error", "error_code": "...", "message": "..."}}`; each operation lists
its `error_code` values per status. Every answer carries `X-Request-Id`; answers to
keyed calls carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
"""
SPECTACULAR_SETTINGS = {
    "TITLE": "Lithtrix API",
    "DESCRIPTION": _QUICKSTART,
    "VERSION": "1.0.0",
    "SERVERS": [{"url": LITHTRIX_PUBLIC_URL, "description": "This deployment"}],
    "SCHEMA_PATH_PREFIX": r"/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "webhooks.serializers.EVENT_TYPES",
        "WebhookDeliveryStatusEnum": "webhooks.models.WebhookDelivery.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "lithtrix.openapi.add_plain_view_operations",
        "lithtrix.openapi.document_errors_and_headers",
        "lithtrix.openapi.link_new_keys",
        "webhooks.payloads.add_event_schemas",
        "lithtrix.openapi.group_and_order",
    ],
    # Operations in the schema's order (lithtrix.openapi.group_and_order); the
    # schemas' section folded.
    "SWAGGER_UI_SETTINGS": {
        "deepLinking": True,
        "persistAuthorization": True,
        "defaultModelsExpandDepth": 0,
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
