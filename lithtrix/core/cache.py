"""The Redis cache backends the rate-limit counters use: one Redis, or a Redis
Cluster (LITHTRIX_REDIS_CLUSTER)."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient
from django.core.cache.backends.redis import RedisSerializer
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError

# A fixed-window counter in one round trip: count, and give a new window its expiry.
# It touches one key, KEYS[1], and must stay so: on a Redis Cluster every key a
# script touches has to sit in one hash slot, and one key always does.
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
        return _run_count_hit(counting.client, key, timeout)


def _run_count_hit(client: redis.Redis | RedisCluster, key: str, timeout: int) -> int:
    try:
        return int(client.evalsha(_COUNT_HIT_SHA, 1, key, timeout))
    except NoScriptError:  # a new or restarted Redis (or a promoted replica): EVAL loads it
        return int(client.eval(_COUNT_HIT, 1, key, timeout))


# One RedisCluster per process and cluster: Django makes a cache backend (and so a
# client object) per thread, and a RedisCluster is safe to share between threads (a
# connection pool per node, a lock around its slot map). Keyed by the process id as
# well: a connection is never shared across a fork.
_clusters: dict[tuple[str, ...], tuple[int, RedisCluster]] = {}
_clusters_lock = threading.Lock()


class RedisClusterCacheClient(RedisCacheClient):
    """Django's Redis cache client on a Redis Cluster, through redis-py's RedisCluster.

    Its ``retry`` allows no retry, as the single-node client's: a failed call is
    reported at once and the rate limit's breaker decides. A connection error makes
    RedisCluster read the slot map again (CLUSTER SLOTS from another node) before
    raising, so once a replica has been promoted the next call goes to the new master;
    ``count_hit`` tries that new master at once (below).
    """

    # Set by Django's RedisCacheClient.__init__ (its stubs leave them out).
    _servers: list[str]
    _pool_options: dict[str, Any]
    _serializer: RedisSerializer

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._cluster_options = dict(self._pool_options)
        # RedisCluster takes its retry policy as an argument of its own (in the
        # connection options it is refused); parser_class it does not take.
        self._cluster_retry = self._cluster_options.pop("retry", None)
        self._cluster_options.pop("parser_class", None)

    # A RedisCluster answers every command Django's client methods send (single-key
    # ones routed by slot; the multi-key ones are overridden below).
    def get_client(self, key: Any = None, *, write: bool = False) -> RedisCluster:  # type: ignore[override]
        name = tuple(self._servers)
        pid = os.getpid()
        found = _clusters.get(name)
        if found is not None and found[0] == pid:
            return found[1]
        with _clusters_lock:
            found = _clusters.get(name)
            if found is None or found[0] != pid:
                # Kept only once it reached a node: a failure is raised to the caller
                # and the next call tries again.
                found = _clusters[name] = (pid, self._connect())
            return found[1]

    def _connect(self) -> RedisCluster:
        # The first URL carries the connection options (password, TLS); any further
        # ones are more nodes to start from, for a process that starts while the
        # first is down. Once connected it knows every node of the cluster.
        others = [urllib.parse.urlsplit(server) for server in self._servers[1:]]
        return RedisCluster.from_url(
            self._servers[0],
            startup_nodes=[ClusterNode(url.hostname, url.port or 6379) for url in others],
            retry=self._cluster_retry,
            **self._cluster_options,
        )

    def count_hit(self, key: str, timeout: int) -> int:
        client = self.get_client(key, write=True)
        node = client.get_node_from_key(key)
        try:
            return _run_count_hit(client, key, timeout)
        except redis.exceptions.ConnectionError:
            # RedisCluster has read the slot map again. A slot that now has another
            # master (a replica promoted since this process last read the map) is
            # tried there once: the failed node serves it no more. Before the
            # promotion the map is unchanged, and the failure goes to the caller (the
            # rate limit's breaker) at once. A timeout is never tried again: a
            # stalled master would cost every call twice its wait.
            if client.get_node_from_key(key) == node:
                raise
            return _run_count_hit(client, key, timeout)

    # MGET and MSET need every key in one hash slot; these spread them across slots.

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        keys = list(keys)
        values = self.get_client(None).mget_nonatomic(keys)
        return {
            key: self._serializer.loads(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    def set_many(self, data: Mapping[Any, Any], timeout: Any) -> None:
        client = self.get_client(None, write=True)
        if timeout == 0:  # as Django's set_many: expired at once
            client.delete(*data)
            return
        # One pipeline, which RedisCluster sends to each node as one batch.
        pipeline = client.pipeline()
        for key, value in data.items():
            pipeline.set(key, self._serializer.dumps(value), ex=timeout)
        pipeline.execute()


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


class RedisClusterCache(RedisCache):
    """RedisCache on a Redis Cluster (LITHTRIX_REDIS_CLUSTER=on): LOCATION names one
    node (or several, comma-separated) of the cluster, database 0."""

    _cache: RedisClusterCacheClient

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisClusterCacheClient
