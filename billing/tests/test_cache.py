"""billing.cache.RedisCache: the rate-limit counters' increment."""

from __future__ import annotations

import pytest
from django.core.cache import caches


@pytest.fixture
def redis_cache(redis_url):
    from billing.cache import RedisCache

    cache = caches["default"]
    assert isinstance(cache, RedisCache)
    return cache


def test_incr_counts_atomically_and_keeps_the_expiry(redis_cache):
    assert redis_cache.add("counter", 1, 60) is True
    assert redis_cache.add("counter", 1, 60) is False
    assert [redis_cache.incr("counter") for _ in range(3)] == [2, 3, 4]
    assert redis_cache.incr("counter", 10) == 14
    assert redis_cache.get("counter") == 14
    client = redis_cache._cache.get_client(None)
    assert 0 < client.ttl(redis_cache.make_and_validate_key("counter")) <= 60


def test_incr_of_a_missing_key_raises_and_creates_nothing(redis_cache):
    with pytest.raises(ValueError, match="not found"):
        redis_cache.incr("missing")
    assert redis_cache.get("missing") is None


def test_decr_counts_down(redis_cache):
    redis_cache.set("counter", 5, 60)
    assert redis_cache.decr("counter") == 4
