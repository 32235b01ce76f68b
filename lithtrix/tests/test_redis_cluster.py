"""Every Redis use on a real Redis Cluster (3 masters, 3 replicas, started here) with
LITHTRIX_REDIS_CLUSTER: the agent limits, django-ratelimit's per-address scopes, the
seen-valid key markers, Django's multi-key cache calls, /readyz, several gunicorn
workers and make run's server sharing counts, the URLs the flag refuses, and a
master stalled and killed under the client."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.core.cache import caches
from django.db import connection
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from keys import authentication
from keys.crypto import generate_key, hash_key
from lithtrix.core import cache as cache_module
from lithtrix.core import ratelimit
from lithtrix.core.cache import RedisClusterCache
from lithtrix.core.ratelimit import AGENT_GROUP, parse_rate, reset_breaker, window_end
from lithtrix.tests.faults import REDIS_OPTIONS
from testing.assertions import assert_envelope
from testing.redis_cluster import RedisCluster, RedisClusterMissing, running_cluster
from testing.servers import (
    BASE_DIR,
    EXACT_COUNT_TIMEOUT,
    app_environment,
    burst,
    database_url,
    free_port,
    running_gunicorn,
    serve_check,
    start_runserver,
)

pytestmark = pytest.mark.slow

PREFIX = "lithtrix"


@contextlib.contextmanager
def started_cluster(directory: Path) -> Iterator[RedisCluster]:
    """A throwaway cluster; without redis-server a failure in CI, a skip elsewhere."""
    try:
        with running_cluster(directory) as cluster:
            yield cluster
    except RedisClusterMissing as missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis Cluster tests: {missing}")
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[RedisCluster]:
    with started_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def cluster_cache() -> RedisClusterCache:
    cache = caches["default"]
    assert isinstance(cache, RedisClusterCache)
    return cache


def cache_settings(url: str, backend: str = "lithtrix.core.cache.RedisClusterCache") -> dict:
    """CACHES as lithtrix/settings/cache.py makes them for ``url``."""
    return {
        "default": {
            "BACKEND": backend,
            "LOCATION": url,
            "KEY_PREFIX": PREFIX,
            "OPTIONS": {**REDIS_OPTIONS, "retry": Retry(NoBackoff(), 0)},
        }
    }


@pytest.fixture
def on_cluster(settings, cluster):
    """The Django cache on the cluster (LITHTRIX_REDIS_CLUSTER=on), emptied."""
    settings.CACHES = cache_settings(cluster.url)
    caches["default"].clear()
    return cluster


def keys_by_master(cluster: RedisCluster, pattern: str) -> dict[int, dict[str, Any]]:
    """Every key matching ``pattern`` with its value, by the port of the master
    holding it (read straight from each master, not through the app's client)."""
    found: dict[int, dict[str, Any]] = {}
    for master in cluster.masters():
        node = redis.Redis(port=master.port)
        try:
            found[master.port] = {
                key.decode(): node.get(key) for key in node.scan_iter(match=pattern, count=1000)
            }
        finally:
            node.close()
    return found


def master_ports(cluster: RedisCluster, keys: list[str]) -> set[int]:
    ports = set()
    for key in keys:
        slot = key_slot(key.encode())
        for low, high, node in cluster.slot_ranges():
            if low <= slot <= high:
                ports.add(node.port)
    return ports


def agent_counter_key(agent_id, rate: str) -> str:
    """The cache key an agent's counter has now under ``rate``, prefix included."""
    limit, period = parse_rate(rate)
    end = window_end(str(agent_id), period, int(time.time()))
    key = ratelimit._cache_key(AGENT_GROUP, str(agent_id), limit, period, end)
    return f"{PREFIX}:1:{key}"


# --- the per-agent limit (the count_hit script) -------------------------------------


AGENTS = 24  # enough that their counters land on all three masters (checked)


@pytest.mark.django_db
def test_agent_limits_are_exact_for_agents_on_every_master(
    on_cluster, api_client, make_agent, ratelimit_clock, throttle_rates
):
    throttle_rates(agent_free="3/m")
    agents = [make_agent() for _ in range(AGENTS)]

    for agent in agents:
        allowed = [api_client.get("/v1/me", **agent.auth) for _ in range(3)]
        refused = api_client.get("/v1/me", **agent.auth)
        assert [r.status_code for r in allowed] == [200, 200, 200]
        assert [r["RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
        assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
        assert refused["RateLimit-Limit"] == "3"
        assert refused["RateLimit-Remaining"] == "0"
        assert int(refused["Retry-After"]) >= 1

    # One counter per agent, each at 4 (the refused call counted too), spread over
    # the three masters: the script ran on each.
    counters = keys_by_master(on_cluster, f"{PREFIX}:*rl:agent:*")
    assert len(counters) == 3
    assert all(counters.values()), {port: len(keys) for port, keys in counters.items()}
    values = [value for keys in counters.values() for value in keys.values()]
    assert values == [b"4"] * AGENTS


def test_count_hit_script_touches_one_key():
    # On a cluster every key of a script must sit in one hash slot; count_hit keeps
    # to one key so that it always does.
    assert set(re.findall(r"KEYS\[(\d+)\]", cache_module._COUNT_HIT)) == {"1"}


def test_a_script_over_keys_in_two_slots_is_refused(on_cluster):
    client = cluster_cache()._cache.get_client(None)
    assert key_slot(b"a") != key_slot(b"b")
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        client.eval("return 1", 2, "a", "b")


# --- django-ratelimit's per-address scopes -------------------------------------------


def _register(api_client, address: str):
    return api_client.post(
        "/v1/register",
        {"agent_name": f"c-{generate_key().key[-12:]}", "owner_identifier": "c@example.com"},
        format="json",
        REMOTE_ADDR=address,
    )


@pytest.mark.django_db
def test_register_limit_per_address_is_exact_on_the_cluster(
    on_cluster, api_client, ratelimit_clock, throttle_rates
):
    throttle_rates(register="2/m")
    addresses = [f"10.0.{n}.1" for n in range(24)]
    for address in addresses:
        allowed = [_register(api_client, address) for _ in range(2)]
        refused = _register(api_client, address)
        assert [r.status_code for r in allowed] == [201, 201]
        assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
        assert refused["RateLimit-Limit"] == "2"
        assert refused["RateLimit-Remaining"] == "0"

    counters = keys_by_master(on_cluster, f"{PREFIX}:*")
    per_master = {port: len(keys) for port, keys in counters.items()}
    assert sum(per_master.values()) >= len(addresses) and all(per_master.values()), per_master


# --- key markers (seen valid), read while an address is blocked ----------------------


@pytest.mark.django_db
def test_keys_seen_valid_pass_a_blocked_address_through_the_cluster(
    on_cluster, api_client, make_agent, ratelimit_clock, throttle_rates
):
    throttle_rates(auth_failures="2/m")
    agents = [make_agent() for _ in range(9)]
    for agent in agents:
        assert api_client.get("/v1/me", **agent.auth).status_code == 200
    markers = [
        caches["default"].make_and_validate_key(f"authok:{hash_key(a.api_key)[:32]}")
        for a in agents
    ]
    # The markers sit on more than one master (else a single-node client would do).
    assert len(master_ports(on_cluster, markers)) >= 2
    assert [caches["default"].get(f"authok:{hash_key(a.api_key)[:32]}") for a in agents] == [
        1
    ] * len(agents)

    # Another process would know these keys only from the markers.
    authentication.reset_failure_limits()
    junk = {"HTTP_AUTHORIZATION": f"Bearer {generate_key().key}"}
    statuses = [api_client.get("/v1/me", **junk).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]  # the third failure blocks the address
    for agent in agents:
        assert api_client.get("/v1/me", **agent.auth).status_code == 200


# --- Django's cache calls, multi-key ones across slots ----------------------------


def test_many_key_calls_work_across_slots(on_cluster):
    cache = cluster_cache()
    names = [f"item-{n}" for n in range(30)]
    full = [cache.make_and_validate_key(name) for name in names]
    assert len(master_ports(on_cluster, full)) == 3

    cache.set_many({name: {"n": n} for n, name in enumerate(names)}, timeout=60)
    assert cache.get_many([*names, "missing"]) == {name: {"n": n} for n, name in enumerate(names)}
    client = cache._cache.get_client(None)
    assert all(0 < client.ttl(key) <= 60 for key in full)

    cache.set_many({name: n for n, name in enumerate(names)}, timeout=None)
    assert all(client.ttl(key) == -1 for key in full)
    assert cache.get_many(names[:3]) == {names[0]: 0, names[1]: 1, names[2]: 2}

    cache.delete_many(names[:10])
    assert cache.get_many(names) == {name: n for n, name in enumerate(names) if n >= 10}

    cache.set_many({"a": 1, "b": 2}, timeout=0)  # as Django: gone at once
    assert cache.get_many(["a", "b"]) == {}

    assert cache.add("counter", 1) and cache.incr("counter", 4) == 5
    cache.clear()
    assert keys_by_master(on_cluster, "*") == {m.port: {} for m in on_cluster.masters()}


def test_a_second_node_in_the_url_serves_when_the_first_is_down(settings, cluster):
    # A process starting while the named node is down finds the cluster through the next.
    settings.CACHES = cache_settings(f"redis://127.0.0.1:{free_port()}/0,{cluster.url}")
    cache = cluster_cache()
    cache.set("started", "yes", 30)
    assert cache.get("started") == "yes"


# --- /readyz ----------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_is_200_on_the_cluster(on_cluster, client):
    # Each probe writes a key of its own: over ten, every master is touched in turn.
    for _ in range(10):
        response = client.get("/readyz")
        assert response.status_code == 200, response.content
        assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


# --- the flag is what makes it work ------------------------------------------------


@pytest.mark.django_db
def test_without_the_flag_the_cluster_does_not_give_exact_limits(
    settings, cluster, api_client, make_agent, ratelimit_clock, throttle_rates
):
    # The single-node client on the same URL: keys outside the named node's slots
    # answer MOVED, the limiter fails open and those agents are never refused.
    settings.CACHES = cache_settings(cluster.url, backend="lithtrix.core.cache.RedisCache")
    throttle_rates(agent_free="3/m")
    unlimited = 0
    for _ in range(12):
        agent = make_agent()
        statuses = [api_client.get("/v1/me", **agent.auth).status_code for _ in range(4)]
        reset_breaker()
        unlimited += statuses == [200, 200, 200, 200]
    assert unlimited > 0


# --- refused settings -------------------------------------------------------------


def _settings_load(**environ: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh process; print the cache backend they chose."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import lithtrix.settings as s; print(s.CACHES['default']['BACKEND'])",
        ],
        cwd=BASE_DIR,
        env=app_environment(environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:7000/3", "REDIS_URL must name database 0"),
        ("redis://127.0.0.1:7000/0,redis://127.0.0.1:7001/2", "REDIS_URL must name database 0"),
        ("", "LITHTRIX_REDIS_CLUSTER=on needs REDIS_URL"),
    ],
    ids=["database-3", "second-node-database-2", "no-url"],
)
def test_cluster_flag_refuses_a_url_it_cannot_use(url, message):
    loaded = _settings_load(REDIS_URL=url, LITHTRIX_REDIS_CLUSTER="on", DJANGO_DEBUG="on")
    assert loaded.returncode != 0
    assert "ImproperlyConfigured" in loaded.stderr and message in loaded.stderr, loaded.stderr


def test_make_serve_names_the_refused_database_without_a_traceback():
    checked = serve_check({"REDIS_URL": "redis://127.0.0.1:7000/3", "LITHTRIX_REDIS_CLUSTER": "on"})
    assert checked.returncode == 2
    assert "REDIS_URL must name database 0" in checked.stderr, checked.stderr
    assert "Traceback" not in checked.stderr, checked.stderr


def test_cluster_flag_accepts_database_0_and_no_database():
    for url in ("redis://127.0.0.1:7000/0", "redis://127.0.0.1:7000"):
        loaded = _settings_load(REDIS_URL=url, LITHTRIX_REDIS_CLUSTER="on", DJANGO_DEBUG="on")
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.strip() == "lithtrix.core.cache.RedisClusterCache"
    loaded = _settings_load(REDIS_URL="redis://127.0.0.1:7000/3", LITHTRIX_REDIS_CLUSTER="off")
    assert loaded.stdout.strip() == "lithtrix.core.cache.RedisCache", loaded.stderr


# --- gunicorn workers sharing counts on the cluster -------------------------------


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_share_exact_counts_on_the_cluster(cluster, make_agent, tmp_path):
    from lithtrix.tests.test_multiprocess_limits import all_workers_serving, serving_pids

    chosen = agents_on_every_master(cluster, make_agent, "20/d", 2)
    env = cluster_app_environment(
        cluster,
        GUNICORN_WORKER_CLASS="sync",
        # Daily windows: a burst cannot straddle a window's end.
        LITHTRIX_FREE_RATE="20/d",
        LITHTRIX_REGISTER_RATE="5/d",
        **EXACT_COUNT_TIMEOUT,
    )
    with running_gunicorn(workers=4, env=env, log_path=tmp_path / "gunicorn.log") as server:
        all_workers_serving(server)
        me = f"{server.url}/v1/me"
        seen = {a.agent.pk: burst(me, a.auth_header, 30, concurrency=8) for a in chosen}
        registers = [
            requests.post(
                f"{server.url}/v1/register",
                json={"agent_name": f"g-{n}", "owner_identifier": "g@example.com"},
                timeout=30,
            )
            for n in range(8)
        ]
        ready = requests.get(f"{server.url}/readyz", timeout=10)
        pids = serving_pids(server, "/v1/me")

    for responses in seen.values():
        assert Counter(r.status_code for r in responses) == {200: 20, 429: 10}
        remaining = sorted(int(r.headers["RateLimit-Remaining"]) for r in responses)
        assert remaining == [0] * 11 + list(range(1, 20))
    assert [r.status_code for r in registers] == [201] * 5 + [429] * 3
    assert registers[-1].json()["error_code"] == "RATE_LIMIT_EXCEEDED"
    assert ready.status_code == 200, ready.text
    assert len(pids) >= 2, pids


def cluster_app_environment(cluster: RedisCluster, **settings: str) -> dict[str, str]:
    """A server's environment on the test database and ``cluster``, plus ``settings``."""
    return app_environment(
        {
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": cluster.url,
            "LITHTRIX_REDIS_CLUSTER": "on",
            **settings,
        }
    )


def agents_on_every_master(cluster: RedisCluster, make_agent, rate: str, each: int) -> list:
    """``each`` new agents whose counters under ``rate`` live on each master."""
    agents: dict[int, list] = {master.port: [] for master in cluster.masters()}
    while any(len(chosen) < each for chosen in agents.values()):
        agent = make_agent()
        agents[cluster.master_of(agent_counter_key(agent.agent.pk, rate)).port].append(agent)
    return [agent for chosen in agents.values() for agent in chosen[:each]]


@pytest.mark.django_db(transaction=True)
def test_runserver_counts_exactly_on_the_cluster(cluster, make_agent, tmp_path):
    # make run's server (debug on, one thread per request) with REDIS_URL set.
    agents = agents_on_every_master(cluster, make_agent, "5/d", 1)
    env = cluster_app_environment(
        cluster, DJANGO_DEBUG="on", LITHTRIX_FREE_RATE="5/d", **EXACT_COUNT_TIMEOUT
    )
    server = start_runserver(env=env, log_path=tmp_path / "runserver.log")
    try:
        seen = [burst(f"{server.url}/v1/me", a.auth_header, 8, concurrency=4) for a in agents]
        ready = requests.get(f"{server.url}/readyz", timeout=10)
    finally:
        server.stop()

    for responses in seen:
        assert Counter(r.status_code for r in responses) == {200: 5, 429: 3}
        remaining = sorted(int(r.headers["RateLimit-Remaining"]) for r in responses)
        assert remaining == [0] * 4 + [1, 2, 3, 4]
    assert ready.status_code == 200, ready.text


# --- a master killed under the client --------------------------------------------


def test_the_first_call_after_a_promotion_is_counted_on_the_new_master(settings, tmp_path):
    """A call that failed before the promotion left the process a slot map that still
    names the dead master. The first call after the promotion fails there, reads the
    map again and, the slot having a new master, is tried there once more: counted at
    once, where it would fail once more (and the rate limit's breaker wait another
    period)."""
    with started_cluster(tmp_path / "promoted") as cluster:
        settings.CACHES = cache_settings(cluster.url)
        cache = cluster_cache()
        assert cache.count_hit("promoted", 300) == 1
        victim = cluster.master_of(cache.make_and_validate_key("promoted"))
        victim.wait_replicated()

        cluster.kill(victim)
        with pytest.raises(redis.exceptions.ConnectionError):
            cache.count_hit("promoted", 300)  # the old master, before any promotion
        cluster.wait_ok()

        assert victim not in cluster.masters()
        assert cache.count_hit("promoted", 300) == 2


def test_counting_resumes_on_the_promoted_replica_with_the_same_client(settings, tmp_path):
    with started_cluster(tmp_path / "failover") as cluster:
        settings.CACHES = cache_settings(cluster.url)
        cache = cluster_cache()
        names = [f"counter-{n}" for n in range(12)]
        for name in names:
            cache.count_hit(name, 300)
        client = cache._cache.get_client(None)
        key = cache.make_and_validate_key(names[0])

        # A stalled master costs a call about the timeout (0.25 s), then the call
        # fails: no retry (redis-py's default would try three more times).
        stalled = cluster.master_of(cache.make_and_validate_key("stall"))
        assert stalled.process is not None
        os.kill(stalled.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                cache.count_hit("stall", 300)
            waited = time.monotonic() - started
        finally:
            os.kill(stalled.process.pid, signal.SIGCONT)
        assert waited < 0.8, waited
        cluster.wait_ok()

        victim = cluster.master_of(key)
        on_victim = [
            n for n in names if cluster.master_of(cache.make_and_validate_key(n)) == victim
        ]
        # The master's replica has the counters before the master goes.
        victim.wait_replicated()

        cluster.kill(victim)
        killed = time.monotonic()
        failures, slowest, counted = 0, 0.0, None
        while counted is None and time.monotonic() - killed < 30:
            started = time.monotonic()
            try:
                counted = cache.count_hit(on_victim[0], 300)
            except Exception:
                failures += 1
                time.sleep(0.1)
            slowest = max(slowest, time.monotonic() - started)
        recovered = time.monotonic() - killed

        assert counted is not None, f"never counted again after {failures} failures"
        assert failures > 0
        # The same process-wide client found the promoted replica by itself.
        assert cache._cache.get_client(None) is client
        assert victim not in cluster.masters()
        # The promoted replica had the counts and goes on from them.
        assert counted == 2
        assert [cache.count_hit(n, 300) for n in on_victim[1:]] == [2] * (len(on_victim) - 1)
        # No call waited much beyond the timeout (a CLUSTERDOWN answer adds redis-py's
        # 0.25 s pause before it reads the slot map again).
        assert slowest < 1.0, slowest
        assert recovered < 15, recovered
