"""bench/run.py's arithmetic over rounds: CPU by component, the stack's own CPU per
request, and 1 vs 2 hosts."""

from __future__ import annotations

import pytest

from bench.run import (
    AUTHORIZE,
    AUTHORIZE_ONE_HOST,
    ENDPOINTS,
    Result,
    cpu_table,
    endpoints_for,
    hosts_comparison,
    stack_cpu_per_request,
)


def result(rps: float, *, gunicorn_s: float = 0.0, redis_s: float = 0.0, busy_s: float = 0.0):
    components = {"gunicorn": {"cpu_s": gunicorn_s}, "redis": {"cpu_s": redis_s}}
    return Result(
        rps=rps,
        p50_ms=1.0,
        p99_ms=2.0,
        requests=int(rps),  # 1 s runs
        non_2xx=0,
        wall_s=1.0,
        busy_s=busy_s,
        cpu_by_component=components if busy_s else {},
    )


def test_two_hosts_add_the_one_host_row_and_one_host_does_not():
    assert [e.name for e in endpoints_for(1)] == [e.name for e in ENDPOINTS]
    two = endpoints_for(2)
    assert two[-1].name == AUTHORIZE_ONE_HOST
    assert two[-1].front == "one_host" and two[-1].path == "/v1/authorize"


def test_cpu_table_adds_the_rounds_up_per_endpoint():
    rounds = [
        {AUTHORIZE: result(100, gunicorn_s=0.8, redis_s=0.1, busy_s=1.6)},
        {AUTHORIZE: result(200, gunicorn_s=1.2, redis_s=0.1, busy_s=2.0)},
    ]

    table = cpu_table(rounds, cores=2)[AUTHORIZE]

    # 2.0 s of gunicorn over 2 s of wall time on 2 cores; 3.6 s busy in all.
    assert table["gunicorn"]["capacity_pct"] == 50.0
    assert table["gunicorn"]["share_of_busy_pct"] == pytest.approx(55.6)
    assert table["redis"]["capacity_pct"] == 5.0
    assert table["other"]["cpu_s"] == pytest.approx(1.4)
    assert table["machine"]["capacity_pct"] == 90.0


def test_stack_cpu_per_request_counts_only_the_components():
    rounds = [
        {AUTHORIZE: result(100, gunicorn_s=0.8, redis_s=0.1, busy_s=5.0)},
        {AUTHORIZE: result(200, gunicorn_s=1.2, redis_s=0.2, busy_s=5.0)},
    ]

    # 2.3 s of the stack's CPU for 300 requests, whatever else kept the machine busy.
    assert stack_cpu_per_request(rounds, AUTHORIZE) == pytest.approx(7.667)
    assert stack_cpu_per_request([{AUTHORIZE: result(100)}], AUTHORIZE) is None


def test_hosts_comparison_takes_ratios_within_each_round():
    rounds = [
        {AUTHORIZE: result(300), AUTHORIZE_ONE_HOST: result(200)},
        {AUTHORIZE: result(100), AUTHORIZE_ONE_HOST: result(100)},
        {AUTHORIZE: result(240), AUTHORIZE_ONE_HOST: result(160)},
    ]
    results = {AUTHORIZE: rounds[2][AUTHORIZE], AUTHORIZE_ONE_HOST: rounds[0][AUTHORIZE_ONE_HOST]}

    comparison = hosts_comparison(results, rounds)

    assert comparison == {
        "one_host_rps": 200,
        "two_hosts_rps": 240,
        "ratio": 1.5,  # not 240 / 200: each round's ratio, then their median
        "per_round": [1.5, 1.0, 1.5],
    }
