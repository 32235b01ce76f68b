"""Django itself: secret, hosts, apps, middleware, templates, auth, static files, HTTPS."""

import os

from django.core.exceptions import ImproperlyConfigured

from lithtrix.settings.env import BASE_DIR, env_bool, env_int, env_list

DEBUG = env_bool("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG is on.")
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 - debug only

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    # django.contrib.admin, with the staff console's site (branding, index order).
    "lithtrix.admin.LithtrixAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Admin login throttling (settings in lithtrix/settings/admin.py).
    "axes",
    "accounts",
    "keys",
    "billing",
    "idempotency",
    # Events recorded with their cause and dispatched by the job system.
    "events",
    # Agent webhooks: events delivered to the agent's URL (Standard Webhooks).
    "webhooks",
    # Owner e-mail: deliveries, the daily cap, unsubscribes (lithtrix/settings/mail.py).
    "mail",
    # The job system (lithtrix/settings/jobs.py).
    "django_q",
    "djstripe",
    # OpenAPI 3 schema and docs (assets from the sidecar package: no CDN).
    "drf_spectacular",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    # Counts and times every answer, including those the next ones give.
    "lithtrix.core.metrics.MetricsMiddleware",
    "lithtrix.core.request_id.RequestIdMiddleware",
    # Cache-Control: no-store on /v1; exceptions of plain views -> the envelope.
    "lithtrix.core.middleware.ApiEdgeMiddleware",
    # /healthz, /readyz, /metrics: answered before the Host header is checked.
    "lithtrix.core.middleware.ProbeMiddleware",
    "lithtrix.core.middleware.HostValidationMiddleware",
    "lithtrix.core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # /v1/authorize, answered here: nothing below serves it (billing.metering.middleware).
    "billing.metering.middleware.AuthorizeMiddleware",
    # The admin's static files, served from STATIC_ROOT (collectstatic).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last of Django's, as django-axes asks: refuses a locked-out admin login.
    "axes.middleware.AxesMiddleware",
    "lithtrix.core.notes.RateLimitHeadersMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so a locked-out user name or address is refused before any password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# The envelope for a CSRF failure under /v1 (Django's page for the admin).
CSRF_FAILURE_VIEW = "lithtrix.core.responses.csrf_failure_view"

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

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest variant: it refuses to render a template whose static file
    # was never collected, which tests and `runserver` would hit.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Request bodies ----------------------------------------------------------
# Largest accepted request body; larger ones get 413 PAYLOAD_TOO_LARGE.
LITHTRIX_MAX_BODY_BYTES = env_int("LITHTRIX_MAX_BODY_BYTES", 64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = LITHTRIX_MAX_BODY_BYTES

# --- HTTPS ---------------------------------------------------------------------
# DJANGO_HTTPS=on says the deployment is reached over TLS: it turns on HSTS, secure
# cookies and the http->https redirect (each overridable), so `check --deploy` is
# clean while local plain-http development keeps the defaults.
HTTPS = env_bool("DJANGO_HTTPS")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
# Probes often speak plain http from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
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
