"""The cache, which holds the rate-limit counters: Redis, shared by every process."""

import os

from django.core.exceptions import ImproperlyConfigured

from lithtrix.settings.django import DEBUG
from lithtrix.settings.env import env_bool

REDIS_URL = os.environ.get("REDIS_URL", "")
# Prefix of every cache key, so several deployments can share one Redis database.
LITHTRIX_CACHE_PREFIX = os.environ.get("LITHTRIX_CACHE_PREFIX", "lithtrix")

if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache with a one-round-trip counter (billing/metering/cache.py).
            "BACKEND": "billing.metering.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": LITHTRIX_CACHE_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Rate-limit counters (billing/metering/ratelimit.py) must be shared by every server
# process. A process-local cache is right only where one process serves: the debug
# dev server, or a deployment that says so (the test suite does).
LITHTRIX_SINGLE_PROCESS = env_bool("LITHTRIX_SINGLE_PROCESS")
if not REDIS_URL and not DEBUG and not LITHTRIX_SINGLE_PROCESS:
    raise ImproperlyConfigured(
        "REDIS_URL is required unless DJANGO_DEBUG is on: rate limits must hold across processes."
    )

RATELIMIT_USE_CACHE = "default"
SILENCED_SYSTEM_CHECKS = [
    # Django's RedisCache (billing.metering.cache's is one) is not on django-ratelimit's
    # list, but it is shared and increments atomically.
    "django_ratelimit.W001",
    # Without Redis: the process-local cache allowed just above (one process only).
    *([] if REDIS_URL else ["django_ratelimit.E003"]),
]
