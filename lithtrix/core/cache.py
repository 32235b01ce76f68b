"""The Redis cache backend the rate-limit counters use."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient
from redis.exceptions import NoScriptError

# A fixed-window counter in one round trip: count, and give a new window its expiry.
_COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""
_COUNT_HIT_SHA = hashlib.sha1(_COUNT_HIT.encode()).hexdigest()  # noqa: S324 - Redis's script id


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counting = threading.local()

    def count_hit(self, key: str, timeout: int) -> int:
        # Counted on every rate-limited request, so each thread keeps one client on
        # one connection of its own (redis-py's single_connection_client: the same
        # timeouts and parser as the pool's, reconnected after an error) and sends
        # EVALSHA itself. Checking a connection out of the pool and back, and
        # redis-py's Script wrapper, cost more than the round trip's own client work
        # (measured: 100 -> 55 us of CPU per count). Per process id as well: a
        # connection is never shared across a fork.
        counting = self._counting
        if getattr(counting, "pid", None) != os.getpid():
            pool = self.get_client(key, write=True).connection_pool
            counting.client = redis.Redis(connection_pool=pool, single_connection_client=True)
            counting.pid = os.getpid()
        client = counting.client
        try:
            return int(client.evalsha(_COUNT_HIT_SHA, 1, key, timeout))
        except NoScriptError:  # a new or restarted Redis: EVAL loads the script
            return int(client.eval(_COUNT_HIT, 1, key, timeout))


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
