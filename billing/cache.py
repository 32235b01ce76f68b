"""The Redis cache backend the rate-limit counters use."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

# INCRBY only when the key exists, in one atomic step: an expired key is never
# recreated without its expiry.
_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class RedisCacheClient(DjangoRedisCacheClient):
    def incr(self, key, delta):
        client = self.get_client(key, write=True)
        value = client.register_script(_INCR_IF_EXISTS)(keys=[key], args=[delta])
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value


class RedisCache(DjangoRedisCache):
    """Django's RedisCache with a one-round-trip, atomic incr.

    Django's own checks EXISTS and then sends INCR: two round trips, and a key that
    expires between them comes back without an expiry. django-ratelimit counts with
    add (SET NX EX) and then incr, so a counted request costs two round trips here.
    """

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
