"""The cache, which holds the rate-limit counters: Redis, shared by every process."""

import os

from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from lithtrix.settings.django import DEBUG
from lithtrix.settings.env import env_bool, env_float

REDIS_URL = os.environ.get("REDIS_URL", "")
# Prefix of every cache key, so several deployments can share one Redis database.
LITHTRIX_CACHE_PREFIX = os.environ.get("LITHTRIX_CACHE_PREFIX", "lithtrix")
# Connect and read timeout of every Redis call: a stalled Redis costs a request at
# most this long (and then, thanks to the breaker below, nothing for a while).
LITHTRIX_CACHE_TIMEOUT_SECONDS = env_float("LITHTRIX_CACHE_TIMEOUT_SECONDS", 0.25)
# REDIS_URL names a node of a Redis Cluster (or several, comma-separated): every
# Redis call goes through redis-py's cluster client.
LITHTRIX_REDIS_CLUSTER = env_bool("LITHTRIX_REDIS_CLUSTER")

if LITHTRIX_REDIS_CLUSTER:
    if not REDIS_URL:
        raise ImproperlyConfigured("LITHTRIX_REDIS_CLUSTER=on needs REDIS_URL (a cluster node).")
    for _url in REDIS_URL.replace(";", ",").split(","):
        _db = parse_url(_url.strip()).get("db", 0)
        if int(_db) != 0:
            raise ImproperlyConfigured(
                f"LITHTRIX_REDIS_CLUSTER=on: REDIS_URL must name database 0 (a Redis "
                f"Cluster has no other), not database {_db}."
            )

if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache with a one-round-trip counter (lithtrix/core/cache.py).
            "BACKEND": (
                "lithtrix.core.cache.RedisClusterCache"
                if LITHTRIX_REDIS_CLUSTER
                else "lithtrix.core.cache.RedisCache"
            ),
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": LITHTRIX_CACHE_PREFIX,
            "OPTIONS": {
                "socket_connect_timeout": LITHTRIX_CACHE_TIMEOUT_SECONDS,
                "socket_timeout": LITHTRIX_CACHE_TIMEOUT_SECONDS,
                # No retries: a failure is reported at once and the rate limit's
                # breaker decides what happens next.
                "retry": Retry(NoBackoff(), 0),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Rate-limit counters (lithtrix/core/ratelimit.py) must be shared by every server
# process. A process-local cache is right only where one process serves: the debug
# dev server, or a deployment that says so (the test suite does).
LITHTRIX_SINGLE_PROCESS = env_bool("LITHTRIX_SINGLE_PROCESS")
if not REDIS_URL and not DEBUG and not LITHTRIX_SINGLE_PROCESS:
    raise ImproperlyConfigured(
        "REDIS_URL is required unless DJANGO_DEBUG is on: rate limits must hold across processes."
    )

# When the cache cannot be reached: "open" lets requests through without a rate
# limit, "closed" answers 503 SERVICE_UNAVAILABLE. The lifetime cap (in the
# database) holds either way.
LITHTRIX_RATE_LIMIT_ON_FAILURE = os.environ.get("LITHTRIX_RATE_LIMIT_ON_FAILURE", "open").lower()
if LITHTRIX_RATE_LIMIT_ON_FAILURE not in ("open", "closed"):
    raise ImproperlyConfigured("LITHTRIX_RATE_LIMIT_ON_FAILURE must be 'open' or 'closed'.")
# After a cache failure, rate limits skip the cache for this long (a circuit breaker).
LITHTRIX_RATE_LIMIT_BREAKER_SECONDS = env_float("LITHTRIX_RATE_LIMIT_BREAKER_SECONDS", 5)
