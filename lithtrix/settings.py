"""Settings, read from the environment (see the Configuration table in README.md).

Production secrets have no default: a deployment that forgets one fails at start,
not at the first request.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG is on.")
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 - debug only

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_ratelimit",
    "accounts",
    "keys",
    "billing",
]

MIDDLEWARE = [
    "lithtrix.middleware.RequestIdMiddleware",
    "lithtrix.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "billing.metering.ratelimit.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "lithtrix.urls"
WSGI_APPLICATION = "lithtrix.wsgi.application"
# API paths have no trailing slash; redirecting a POST to add one would drop its body.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The threaded dev server writes from several threads at once: take the write
    # lock at BEGIN (no upgrade deadlocks) and wait for it instead of failing with
    # "database is locked". WAL lets readers run beside the writer.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate-limit counters) ---------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache with an atomic, one-round-trip incr (billing/metering/cache.py).
            "BACKEND": "billing.metering.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("LITHTRIX_CACHE_PREFIX", "lithtrix"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Rate-limit counters (billing/metering/ratelimit.py) must be shared by every server process.
# A process-local cache is right only where one process serves: the debug dev
# server, or a deployment that says so (the test suite does).
LITHTRIX_SINGLE_PROCESS = env_bool("LITHTRIX_SINGLE_PROCESS")
if not REDIS_URL and not DEBUG and not LITHTRIX_SINGLE_PROCESS:
    raise ImproperlyConfigured(
        "REDIS_URL is required unless DJANGO_DEBUG is on: rate limits must hold across processes."
    )
RATELIMIT_USE_CACHE = "default"
SILENCED_SYSTEM_CHECKS = [
    # Django's RedisCache (billing.metering.cache's is one) is not on django-ratelimit's list,
    # but it is shared and increments atomically.
    "django_ratelimit.W001",
]
if not REDIS_URL:
    # The process-local cache allowed just above (one process only).
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")

# --- Auth, i18n, static --------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Request bodies ----------------------------------------------------------
# Largest accepted request body; larger ones get 413 PAYLOAD_TOO_LARGE.
LITHTRIX_MAX_BODY_BYTES = int(os.environ.get("LITHTRIX_MAX_BODY_BYTES", str(64 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = LITHTRIX_MAX_BODY_BYTES

# --- Tiers and limits (see billing/metering/tiers.py) ------------------------------------
LITHTRIX_FREE_CALL_LIMIT = int(os.environ.get("LITHTRIX_FREE_CALL_LIMIT", "300"))
LITHTRIX_FREE_RATE = os.environ.get("LITHTRIX_FREE_RATE", "60/m")
LITHTRIX_PRO_RATE = os.environ.get("LITHTRIX_PRO_RATE", "600/m")
LITHTRIX_REGISTER_RATE = os.environ.get("LITHTRIX_REGISTER_RATE", "10/m")

# Number of reverse proxies of ours in front of the app that append to
# X-Forwarded-For. 0: the client IP is REMOTE_ADDR and X-Forwarded-For is ignored.
LITHTRIX_TRUSTED_PROXY_COUNT = int(os.environ.get("LITHTRIX_TRUSTED_PROXY_COUNT", "0"))

# --- REST framework ----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["keys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["lithtrix.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "lithtrix.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Per agent (rate by tier) or per client IP; views opt out with throttle_classes = [].
    "DEFAULT_THROTTLE_CLASSES": ["billing.metering.ratelimit.RateLimitThrottle"],
}

# --- Logging -------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "lithtrix.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # 4xx answers are the API working as designed; 5xx are logged with a request id.
        "django.request": {"level": "ERROR"},
    },
}

# --- Stripe and dj-stripe (billing/payments/stripe_client.py talks to Stripe) -------------
# Without STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY billing answers 503
# BILLING_UNAVAILABLE. `make run` with no STRIPE_* variables starts localstripe on
# loopback and sets them (billing/payments/dev/devstripe.py).
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_PUBLIC_KEY = STRIPE_PUBLISHABLE_KEY  # the name dj-stripe reads
# Base URL of a Stripe-compatible server (localstripe); empty means Stripe's own.
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
# Price of the Pro subscription; empty means Pro is card-on-file without a subscription.
STRIPE_PRO_PRICE_ID = os.environ.get("STRIPE_PRO_PRICE_ID", "")
STRIPE_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_CONNECT_TIMEOUT_SECONDS", "5"))
STRIPE_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "20"))
STRIPE_MAX_NETWORK_RETRIES = int(os.environ.get("STRIPE_MAX_NETWORK_RETRIES", "2"))
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
INSTALLED_APPS += ["djstripe"]

# --- Production serving: HTTPS, static files, JSON logs, OpenAPI ------------------
# DJANGO_HTTPS=on says the deployment is reached over TLS: it turns on HSTS, secure
# cookies and the http->https redirect (each overridable), so `check --deploy` is
# clean while local plain-http development keeps the defaults.
HTTPS = env_bool("DJANGO_HTTPS")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
# Probes often speak plain http from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = int(
    os.environ.get("DJANGO_SECURE_HSTS_SECONDS", str(365 * 24 * 3600 if HTTPS else 0))
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", HTTPS)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", HTTPS)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
# Only behind a proxy of ours that sets this header (and strips a client's copy):
# e.g. DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO. Trusting it otherwise
# would let any client claim https.
if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["DJANGO_SECURE_PROXY_SSL_HEADER"], "https")

# The admin's static files, served by WhiteNoise from STATIC_ROOT (collectstatic).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest variant: it refuses to render a template whose static file
    # was never collected, which tests and `runserver` would hit.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# One JSON object per log line (DJANGO_LOG_FORMAT=plain for human-readable lines),
# each with the request id; secrets are scrubbed by the formatter.
LOGGING["formatters"]["json"] = {"()": "lithtrix.logs.JsonFormatter"}
LOGGING["formatters"]["plain"]["()"] = "lithtrix.logs.PlainFormatter"
LOGGING["handlers"]["console"]["formatter"] = os.environ.get("DJANGO_LOG_FORMAT", "json")
# One line per request (method, path, status, duration, agent id); off with WARNING.
LOGGING["loggers"]["lithtrix.access"] = {
    "level": os.environ.get("LITHTRIX_ACCESS_LOG_LEVEL", "INFO")
}

# OpenAPI 3 schema at /v1/openapi.json, docs at /v1/docs (assets from the sidecar
# package: no CDN).
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "lithtrix.openapi.LithtrixAutoSchema"
SPECTACULAR_SETTINGS = {
    "TITLE": "Lithtrix API",
    "DESCRIPTION": (
        "Accounts, API keys, metering and billing for AI agents. Authenticate with "
        "`Authorization: Bearer ltx_...`; every non-2xx answer is the error envelope."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "lithtrix.openapi.add_plain_view_operations",
        "lithtrix.openapi.document_errors_and_headers",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
