"""bench/capacity.py's summary: targets judged over the runs, each step's figures."""

from __future__ import annotations

from typing import Any

from bench.capacity import FULL, SHORT, steps, summary

AUTHORIZE = "GET /v1/authorize"


def bench_record(name: str, authorize_ratio: float, met: bool, **extra: Any) -> dict[str, Any]:
    return {
        "_file": f"bench/results/{name}.json",
        "worker_shape": "nginx -> gunicorn 4 sync workers",
        "cpu_cores": 2,
        "results": {AUTHORIZE: {"rps": 300.0}},
        "ratios": {AUTHORIZE: {"x tok+thr": authorize_ratio}},
        "cpu_ms_per_metered_call": 7.5,
        "stack_cpu_ms_per_metered_call": 6.0,
        "targets": [
            {"check": "GET /v1/authorize >= 1.5x Token", "value": authorize_ratio, "met": met}
        ],
        "cpu_by_component": {
            AUTHORIZE: {
                "gunicorn": {"capacity_pct": 55.0},
                "postgresql": {"capacity_pct": 9.0},
                "other": {"capacity_pct": 30.0},
                "machine": {"capacity_pct": 99.0},
            }
        },
        "saturates_first": {AUTHORIZE: "gunicorn"},
        **extra,
    }


def test_summary_judges_each_target_over_the_runs_and_reports_every_step():
    runs = {
        "1 host, run 1": bench_record("a", 1.6, True),
        "1 host, run 2": bench_record("b", 1.4, False),
        "1 host, run 3": bench_record("c", 1.55, True),
        "2 hosts": bench_record(
            "d",
            1.5,
            True,
            hosts_comparison={
                "one_host_rps": 280.0,
                "two_hosts_rps": 310.0,
                "ratio": 1.1,
                "requests_per_host": [900, 880],
            },
        ),
        "gthread workers": bench_record(
            "e",
            1.3,
            False,
            worker_shape="nginx -> gunicorn 4 gthread workers x 4 threads",
            nginx_errors=[],
        ),
        "redis scripts": {
            "_file": "bench/results/f-redis.json",
            "processes": 4,
            "cpu_cores": 2,
            "results": {"single redis-server": {"scripts_per_s": 9000.0}},
            "ratios": {"cluster / single": 0.5},
        },
        "replica": bench_record(
            "g",
            1.5,
            True,
            replica_lag={
                "all": {
                    "samples": 20,
                    "p50_ms": 0.0,
                    "p99_ms": 23.1,
                    "max_ms": 25.0,
                    "p50_bytes": 0,
                    "p99_bytes": 3960,
                    "max_bytes": 4000,
                }
            },
        ),
    }

    text = "\n".join(summary(runs))

    assert "target GET /v1/authorize >= 1.5x Token: met in 2 of 3 runs (1.60, 1.40, 1.55)" in text
    assert "1 host 280, 2 hosts 310 (1.10x" in text
    assert "requests per host [900, 880]" in text
    assert "largest user gunicorn; % of capacity: gunicorn 55%, postgresql 9%" in text
    assert "x Token+throttle 1.60, 1.40, 1.55" in text
    assert "gunicorn 4 gthread workers x 4 threads: 1.30, 7.500 (6.000) ms" in text
    assert "single redis-server 9,000; cluster / single 0.50x" in text
    assert "p99 23.1 ms / 3,960 B" in text
    assert text.splitlines()[-1].startswith("Citus: not run")


def test_the_sequence_runs_every_step_with_the_same_bench_options():
    for options, short in ((FULL, False), (SHORT, True)):
        sequence = dict(steps(short))
        assert list(sequence) == [
            "1 host, run 1",
            "1 host, run 2",
            "1 host, run 3",
            "2 hosts",
            "gthread workers",
            "redis scripts",
            "replica",
        ]
        for name in ("1 host, run 1", "2 hosts", "gthread workers", "replica"):
            assert sequence[name][1:][: len(options["bench"]) + 1] == [
                "bench/run.py",
                *options["bench"],
            ]
        assert sequence["2 hosts"][-2:] == ["--hosts", "2"]
        assert sequence["replica"][-1] == "--replica"
        assert sequence["gthread workers"][-6:] == [
            "--worker-class",
            "gthread",
            "--workers",
            "4",
            "--threads",
            "4",
        ]
        assert sequence["redis scripts"][1] == "bench/redis_scripts.py"
