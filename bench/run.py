"""Benchmark the production stack on loopback and print a table of ratios.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/run.py            # or: make bench

Starts gunicorn (2 sync workers, deploy/gunicorn.conf.py) on a fresh PostgreSQL
database (<name>_bench) and Redis, loads each endpoint with wrk (-t2 -c16 -d10s,
after a 2 s warm-up) and prints req/s, p50 and p99 for: a bare Django JSON view; a
DRF TokenAuthentication view, and the same with UserRateThrottle on Redis; GET
/v1/me; /v1/authorize; then each one's ratio to the bare view and to the two DRF
views. Authenticated load rotates over 1,000 agents (users). Then it grows the
agents to 1,000,000 and measures the two key-authenticated endpoints again.
The comparison views live in bench/ (bench.settings, bench.urls) only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from testing.servers import (  # noqa: E402
    app_environment,
    fresh_database_url,
    manage,
    running_gunicorn,
)

LUA = BASE_DIR / "bench" / "tokens.lua"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    credentials: str | None  # "agents" (Bearer ltx_), "users" (Token), or None


ENDPOINTS = [
    Endpoint("bare Django JSON view", "/bench/bare", None),
    Endpoint("DRF TokenAuthentication", "/bench/drf-token", "users"),
    Endpoint("DRF Token + UserRateThrottle", "/bench/drf-token-throttle", "users"),
    Endpoint("GET /v1/me", "/v1/me", "agents"),
    Endpoint("GET /v1/authorize", "/v1/authorize", "agents"),
]


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _match(pattern: str, output: str) -> str:
    """The first group of ``pattern`` in wrk's output; wrk always prints these lines."""
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{output}")
    return match.group(1)


def _latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if not match:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{output}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(url: str, *, seconds: int, credentials: Path | None, scheme: str) -> Result:
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    env = dict(os.environ)
    if credentials is not None:
        command += ["-s", str(LUA)]
        env.update(BENCH_TOKENS=str(credentials), BENCH_SCHEME=scheme)
    output = subprocess.run(  # noqa: S603
        [*command, url], env=env, capture_output=True, text=True, check=True
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Result(
        rps=float(_match(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_latency(output, "50"),
        p99_ms=_latency(output, "99"),
        requests=int(_match(r"(\d+) requests in", output)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def measure(base_url: str, endpoint: Endpoint, files: dict[str, Path], seconds: int) -> Result:
    credentials = files.get(endpoint.credentials) if endpoint.credentials else None
    scheme = "Token" if endpoint.credentials == "users" else "Bearer"
    url = base_url + endpoint.path
    run_wrk(url, seconds=2, credentials=credentials, scheme=scheme)  # warm-up
    return run_wrk(url, seconds=seconds, credentials=credentials, scheme=scheme)


def measure_rounds(
    base_url: str, endpoints: list[Endpoint], files: dict[str, Path], seconds: int, rounds: int
) -> dict[str, Result]:
    """Each endpoint ``rounds`` times, interleaved (so a burst of outside load hits all
    of them alike); the round with the median req/s is kept."""
    runs: dict[str, list[Result]] = {e.name: [] for e in endpoints}
    for _ in range(rounds):
        for endpoint in endpoints:
            runs[endpoint.name].append(measure(base_url, endpoint, files, seconds))
    return {name: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for name, rs in runs.items()}


def seed(env: dict[str, str], **options: object) -> None:
    args = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.seed", *args], cwd=BASE_DIR, env=env, check=True
    )


def print_table(results: dict[str, Result]) -> None:
    bare = results["bare Django JSON view"].rps
    token = results["DRF TokenAuthentication"].rps
    throttled = results["DRF Token + UserRateThrottle"].rps
    header = (
        f"{'endpoint':<30} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
        f" {'x bare':>7} {'x token':>8} {'x tok+thr':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<30} {r.rps:>8.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.non_2xx:>7}"
            f" {r.rps / bare:>7.2f} {r.rps / token:>8.2f} {r.rps / throttled:>9.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument(
        "--scale-agents", type=int, default=1_000_000, help="0 skips the key-lookup scaling"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not os.environ.get(
        "REDIS_URL"
    ):
        raise SystemExit("bench needs DATABASE_URL=postgres://... and REDIS_URL=redis://...")

    with tempfile.TemporaryDirectory(prefix="lithtrix-bench-") as tmp:
        tmp_dir = Path(tmp)
        env = app_environment(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "DATABASE_URL": fresh_database_url(database_url, "bench", tmp_dir),
                "LITHTRIX_CACHE_PREFIX": f"bench{os.getpid()}",
                # Throughput, not refusals: no agent reaches a limit during a run.
                "LITHTRIX_FREE_RATE": "100000000/m",
                "LITHTRIX_PRO_RATE": "100000000/m",
                "LITHTRIX_FREE_CALL_LIMIT": "100000000",
                "GUNICORN_MAX_REQUESTS": "0",
            }
        )
        manage("migrate", "--noinput", "-v0", env=env)
        files = {"agents": tmp_dir / "agents.txt", "users": tmp_dir / "users.txt"}
        seed(
            env,
            agents=args.agents,
            users=1000,
            keys_out=files["agents"],
            tokens_out=files["users"],
        )
        log_path = tmp_dir / "gunicorn.log"
        print(
            f"gunicorn 2 sync workers, wrk -t2 -c16 -d{args.seconds}s (2 s warm-up), "
            f"{args.agents:,} agents, median of {args.rounds} interleaved rounds, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        with running_gunicorn(workers=2, env=env, log_path=log_path) as server:
            results = measure_rounds(server.url, ENDPOINTS, files, args.seconds, args.rounds)
        print()
        print_table(results)

        if args.scale_agents > args.agents:
            started = time.monotonic()
            seed(env, agents=args.scale_agents - args.agents, keys_out=files["agents"])
            print(f"\nseeded {args.scale_agents:,} agents in {time.monotonic() - started:.0f}s")
            with running_gunicorn(workers=2, env=env, log_path=log_path) as server:
                keyed = [e for e in ENDPOINTS if e.credentials == "agents"]
                scaled = measure_rounds(server.url, keyed, files, args.seconds, args.rounds)
            print(f"\nkey lookup: {args.agents:,} agents -> {args.scale_agents:,} agents")
            for name, r in scaled.items():
                before = results[name]
                print(
                    f"{name:<30} {before.rps:>8.0f} -> {r.rps:>8.0f} req/s "
                    f"({r.rps / before.rps:.2f}x), p50 {before.p50_ms:.2f} -> {r.p50_ms:.2f} ms, "
                    f"p99 {before.p99_ms:.2f} -> {r.p99_ms:.2f} ms, non-2xx {r.non_2xx}"
                )

        token = results["DRF TokenAuthentication"].rps
        throttled = results["DRF Token + UserRateThrottle"].rps
        me = results["GET /v1/me"].rps
        authorize = results["GET /v1/authorize"].rps
        print()
        print(f"target GET /v1/me >= 1.0x TokenAuthentication: {me / token:.2f}x")
        print(f"target /v1/authorize >= 1.3x Token + throttle: {authorize / throttled:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
