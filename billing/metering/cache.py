"""The Redis cache backend the rate-limit counters use."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient
from redis.commands.core import Script

# A fixed-window counter in one round trip: count, and give a new window its expiry.
_COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_hit_script: Script | None = None

    def count_hit(self, key: str, timeout: int) -> int:
        # Counted on every rate-limited request: the client and the script are made
        # once (Django's get_client builds a new client object each call; redis-py
        # clients over one pool are safe to share).
        if self._count_hit_script is None:
            client = self.get_client(key, write=True)
            self._count_hit_script = client.register_script(_COUNT_HIT)
        return int(self._count_hit_script(keys=[key], args=[timeout]))


class RedisCache(DjangoRedisCache):
    """Django's RedisCache with a one-round-trip fixed-window counter (``count_hit``).

    Counting with Django's add then incr would take three round trips (SET NX,
    EXISTS, INCRBY), and a key expiring between them comes back without an expiry.
    """

    _cache: RedisCacheClient

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count_hit(self, key: str, timeout: int) -> int:
        """Add one to the counter ``key`` (created at 1 with ``timeout`` seconds to
        live) and return its new value: one round trip, atomic."""
        return self._cache.count_hit(self.make_and_validate_key(key), timeout)
