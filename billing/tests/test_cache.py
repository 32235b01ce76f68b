"""lithtrix.core.cache.RedisCache: the rate-limit counters' one-round-trip count."""

from __future__ import annotations

import pytest
from django.core.cache import caches


@pytest.fixture
def redis_cache(redis_url):
    from lithtrix.core.cache import RedisCache

    cache = caches["default"]
    assert isinstance(cache, RedisCache)
    return cache


def test_decr_counts_down(redis_cache):
    redis_cache.set("counter", 5, 60)
    assert redis_cache.decr("counter") == 4


def test_count_hit_starts_a_window_with_its_expiry_and_counts_in_it(redis_cache):
    assert [redis_cache.count_hit("window", 61) for _ in range(3)] == [1, 2, 3]
    client = redis_cache._cache.get_client(None)
    assert 0 < client.ttl(redis_cache.make_and_validate_key("window")) <= 61
    # The counter is an integer the cache reads back like any other value.
    assert redis_cache.get("window") == 3


@pytest.mark.django_db
def test_a_rate_limited_request_costs_one_redis_round_trip(redis_cache, api_client, registered):
    import redis

    commands = []
    original = redis.Redis.execute_command

    def counting(self, *args, **kwargs):
        commands.append(args[0])
        return original(self, *args, **kwargs)

    # The script reaches this Redis once (a first EVALSHA may miss and load it).
    assert api_client.get("/v1/me", **registered.auth).status_code == 200
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.Redis, "execute_command", counting)
        second = api_client.get("/v1/me", **registered.auth)
        third = api_client.get("/v1/me", **registered.auth)

    assert (second.status_code, third.status_code) == (200, 200)
    assert (second["RateLimit-Remaining"], third["RateLimit-Remaining"]) == ("58", "57")
    assert commands == ["EVALSHA", "EVALSHA"]
