"""Benchmark the production stack on loopback and print a table of ratios.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/run.py            # or: make bench [BENCH_ARGS=...]

By default measures the production shape: nginx with deploy/nginx/lithtrix.conf in
front of gunicorn with deploy/gunicorn.conf.py's defaults (its worker class, threads
and workers); ``--shape direct`` measures gunicorn alone on its port, 4 sync workers
(``--workers``, ``--worker-class``, ``--threads`` change either). The app runs on a
fresh PostgreSQL database (<name>_bench, copied from a migrated template: see
bench/database.py) and Redis; wrk loads each endpoint (-t2 -c16 -d3s, after a 10 s
warm-up, in 9 interleaved rounds, compared pairs side by side, every other round
reversed). It prints req/s, p50, p99, non-2xx answers and the machine's CPU per
request for: a bare Django JSON view; a DRF TokenAuthentication view, and the same
with UserRateThrottle on Redis; GET /v1/me; /v1/authorize (whose CPU per request is
the CPU per metered call); then each one's ratio to the bare view and to the two DRF
views, each ratio the median of the ratios within each round (the machine's outside
load moves between rounds far more than within one). Authenticated load rotates
over 1,000 agents (users). Then it grows the agents to 1,000,000 and measures the
two key-authenticated endpoints again beside TokenAuthentication. The comparison
views live in bench/ (bench.settings, bench.urls) only.

The whole result (table, worker shape, cores, load average, git commit) is written
as JSON to bench/results/<UTC time>-<git sha>.json; ``--compare FILE`` prints how
each ratio moved against such an earlier file. ``--app-env NAME=VALUE`` sets an
app setting for the run (e.g. LITHTRIX_METER_SYNCHRONOUS_COMMIT=off).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import re
import resource
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench import cpu  # noqa: E402
from bench.database import copy_template, migrated_database_url  # noqa: E402
from bench.lag import LagSampler, format_summary, summarize  # noqa: E402
from testing.nginx import start_front, stop_nginx  # noqa: E402
from testing.pg_replica import ReplicatedPostgres, replicated_postgres  # noqa: E402
from testing.servers import GUNICORN_CONF, app_environment, running_gunicorn  # noqa: E402

LUA = BASE_DIR / "bench" / "tokens.lua"
RESULTS_DIR = BASE_DIR / "bench" / "results"
BARE, TOKEN, THROTTLED = (
    "bare Django JSON view",
    "DRF TokenAuthentication",
    "DRF Token + UserRateThrottle",
)
ME, AUTHORIZE = "GET /v1/me", "GET /v1/authorize"
# With --hosts 2: /v1/authorize through a second nginx whose upstream is the first
# host alone, measured beside the two-host rows in the same rounds.
AUTHORIZE_ONE_HOST = "GET /v1/authorize, 1 host"
# The goals, ratios within one run: in the production shape (issue "Past one
# machine"), and the earlier ones for gunicorn alone (issue "Performance and scale").
TARGETS = {
    "production": [(ME, TOKEN, 1.3), (AUTHORIZE, THROTTLED, 1.5)],
    "direct": [(ME, TOKEN, 1.3), (AUTHORIZE, THROTTLED, 1.3)],
}
SHAPES = ("production", "direct")
P99_OVER_P50_MAX = 2.5


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    credentials: str | None  # "agents" (Bearer ltx_), "users" (Token), or None
    front: str = "main"  # which URL serves it: "main", or "one_host" (--hosts 2)


# Each compared pair side by side (TokenAuthentication and /v1/me, Token + throttle
# and /v1/authorize): measured seconds apart, not a round apart.
ENDPOINTS = [
    Endpoint(BARE, "/bench/bare", None),
    Endpoint(TOKEN, "/bench/drf-token", "users"),
    Endpoint(ME, "/v1/me", "agents"),
    Endpoint(THROTTLED, "/bench/drf-token-throttle", "users"),
    Endpoint(AUTHORIZE, "/v1/authorize", "agents"),
]
# The table's order.
TABLE_ORDER = [BARE, TOKEN, THROTTLED, ME, AUTHORIZE, AUTHORIZE_ONE_HOST]
ONE_HOST = Endpoint(AUTHORIZE_ONE_HOST, "/v1/authorize", "agents", front="one_host")


def endpoints_for(hosts: int) -> list[Endpoint]:
    return [*ENDPOINTS, ONE_HOST] if hosts > 1 else list(ENDPOINTS)


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    # The whole machine's busy CPU time (every process: wrk, gunicorn, PostgreSQL,
    # Redis, the kernel) per request: what a request costs, whatever share of the
    # two cores the machine happened to give the run.
    cpu_ms: float = 0.0
    # Where that CPU went: per component (bench/cpu.py), CPU seconds during the run.
    wall_s: float = 0.0
    busy_s: float = 0.0
    cpu_by_component: dict[str, dict[str, float]] = field(default_factory=dict)


def busy_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


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


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    *,
    seconds: int,
    credentials: Path | None,
    scheme: str,
    components: cpu.Components | None = None,
) -> Result:
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    env = dict(os.environ)
    if credentials is not None:
        command += ["-s", str(LUA)]
        env.update(BENCH_TOKENS=str(credentials), BENCH_SCHEME=scheme)
    components = components or {}
    before = cpu.snapshot(components) if components else None
    # wrk is the only child this process reaps meanwhile: its CPU is the change here.
    wrk_before = _children_cpu_seconds()
    started = time.monotonic()
    busy_before = busy_cpu_seconds()
    output = subprocess.run(  # noqa: S603
        [*command, url], env=env, capture_output=True, text=True, check=True
    ).stdout
    busy = busy_cpu_seconds() - busy_before
    wall = time.monotonic() - started
    by_component: dict[str, dict[str, float]] = {}
    if before is not None:
        by_component = cpu.used_seconds(before, cpu.snapshot(components), components)
        by_component["wrk"] = {"cpu_s": _children_cpu_seconds() - wrk_before}
    requests = int(_match(r"(\d+) requests in", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Result(
        rps=float(_match(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_latency(output, "50"),
        p99_ms=_latency(output, "99"),
        requests=requests,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        cpu_ms=round(busy / max(requests, 1) * 1000, 3),
        wall_s=round(wall, 3),
        busy_s=round(busy, 3),
        cpu_by_component=by_component,
    )


@dataclass
class Stack:
    """What wrk loads: the URL of each front (``Endpoint.front``), the root processes
    of each component whose CPU is attributed (bench/cpu.py), and a callback told
    which endpoint is about to be loaded (the replica lag sampler's)."""

    urls: dict[str, str]
    components: dict[str, list[int]] = field(default_factory=dict)
    on_endpoint: Callable[[str], None] | None = None
    nginx_logs: list[Path] = field(default_factory=list)
    host_logs: list[Path] = field(default_factory=list)


def measure(
    stack: Stack, endpoint: Endpoint, files: dict[str, Path], seconds: int, *, warm_up: int
) -> Result:
    credentials = files.get(endpoint.credentials) if endpoint.credentials else None
    scheme = "Token" if endpoint.credentials == "users" else "Bearer"
    url = stack.urls[endpoint.front] + endpoint.path
    if stack.on_endpoint is not None:
        stack.on_endpoint(endpoint.name)
    if warm_up:
        run_wrk(url, seconds=warm_up, credentials=credentials, scheme=scheme)
    return run_wrk(
        url, seconds=seconds, credentials=credentials, scheme=scheme, components=stack.components
    )


Rounds = list[dict[str, Result]]


def measure_rounds(
    stack: Stack,
    endpoints: list[Endpoint],
    files: dict[str, Path],
    seconds: int,
    rounds: int,
    warm_up: int,
) -> tuple[dict[str, Result], Rounds]:
    """Each endpoint ``rounds`` times, interleaved, so that a burst of outside load
    hits all of them alike; per endpoint, the round with the median req/s is kept.
    The rounds are returned too: ratios are taken within each round (see ``ratios``).

    Within a round the endpoints run in the order given (each compared pair side by
    side: see ENDPOINTS), and every other round in reverse, so a machine that speeds
    up or slows down during a round favours neither side of a pair.

    Each endpoint is warmed up ``warm_up`` seconds before its first round, so that
    /v1/authorize runs mostly on its key hints (keys.hints): they are per process,
    and each worker meets each agent's key once on the full lookup before it
    meters that key's calls in one statement."""
    all_rounds: Rounds = []
    for number in range(rounds):
        order = endpoints if number % 2 == 0 else endpoints[::-1]
        measured = {
            e.name: measure(stack, e, files, seconds, warm_up=warm_up if number == 0 else 0)
            for e in order
        }
        all_rounds.append({e.name: measured[e.name] for e in endpoints})
    medians = {
        e.name: sorted((r[e.name] for r in all_rounds), key=lambda r: r.rps)[rounds // 2]
        for e in endpoints
    }
    return medians, all_rounds


def seed(env: dict[str, str], **options: object) -> None:
    args = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.seed", *args], cwd=BASE_DIR, env=env, check=True
    )


RATIO_BASES = {"x bare": BARE, "x token": TOKEN, "x tok+thr": THROTTLED}


def round_ratios(rounds: Rounds, name: str, label: str) -> list[float]:
    base = RATIO_BASES[label]
    return [round(r[name].rps / r[base].rps, 3) for r in rounds]


def ratios(rounds: Rounds) -> dict[str, dict[str, float]]:
    """Each endpoint's req/s over the bare view's, TokenAuthentication's and Token +
    throttle's: the median, over the rounds, of the ratio within each round."""
    return {
        name: {label: statistics.median(round_ratios(rounds, name, label)) for label in RATIO_BASES}
        for name in rounds[0]
    }


def cpu_per_request(rounds: Rounds, name: str) -> float:
    """The median, over the rounds, of the machine's busy CPU ms per request of ``name``."""
    return statistics.median(r[name].cpu_ms for r in rounds)


def print_table(results: dict[str, Result], rounds: Rounds) -> None:
    header = (
        f"{'endpoint':<30} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
        f" {'x bare':>7} {'x token':>8} {'x tok+thr':>9} {'CPU ms/req':>10}"
    )
    print(header)
    print("-" * len(header))
    for name in [n for n in TABLE_ORDER if n in results]:
        r = results[name]
        x = ratios(rounds)[name]
        print(
            f"{name:<30} {r.rps:>8.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.non_2xx:>7}"
            f" {x['x bare']:>7.2f} {x['x token']:>8.2f} {x['x tok+thr']:>9.2f}"
            f" {cpu_per_request(rounds, name):>10.3f}"
        )


def targets(results: dict[str, Result], rounds: Rounds, shape: str) -> list[dict[str, Any]]:
    checks = []
    for name, base, goal in TARGETS[shape]:
        label = "x token" if base == TOKEN else "x tok+thr"
        per_round = round_ratios(rounds, name, label)
        ratio = statistics.median(per_round)
        cpu_ratio = cpu_per_request(rounds, base) / cpu_per_request(rounds, name)
        checks.append(
            {
                "check": f"{name} >= {goal}x {base}",
                "value": round(ratio, 3),
                "met": ratio >= goal,
                "per_round": per_round,
                # The same comparison by CPU cost per request (base's over name's).
                "cpu_ratio": round(cpu_ratio, 3),
            }
        )
    for name in (ME, AUTHORIZE):
        r = results[name]
        spread = r.p99_ms / r.p50_ms
        checks.append(
            {
                "check": f"{name} p99 <= {P99_OVER_P50_MAX}x p50",
                "value": round(spread, 3),
                "met": spread <= P99_OVER_P50_MAX,
            }
        )
    return checks


def print_targets(checks: list[dict[str, Any]]) -> None:
    for check in checks:
        verdict = "met" if check["met"] else "NOT met"
        rounds = check.get("per_round")
        each = f" (rounds: {', '.join(f'{x:.2f}' for x in rounds)})" if rounds else ""
        cpu = f"; by CPU per request {check['cpu_ratio']:.2f}x" if "cpu_ratio" in check else ""
        print(f"target {check['check']}: {check['value']:.2f}x {verdict}{each}{cpu}")


def compare(previous_path: Path, current: dict[str, Any]) -> None:
    """How each ratio moved against an earlier result file (ratios, not req/s: the
    machine's load differs between runs, the ratios within one run much less)."""
    previous = json.loads(previous_path.read_text())
    print(f"\ncompared with {previous_path.name} (commit {previous.get('commit', '?')}):")
    if previous.get("worker_shape") != current["worker_shape"]:
        print(f"(measured as: {previous.get('worker_shape', '?')})")
    print(f"{'endpoint':<30} {'ratio':>9} {'before':>7} {'now':>7} {'change':>7}")
    for name, now in current["ratios"].items():
        before = previous.get("ratios", {}).get(name)
        if before is None:
            continue
        for label in ("x token", "x tok+thr"):
            if label in before and label in now and name not in (BARE, TOKEN, THROTTLED):
                change = now[label] / before[label] - 1
                print(
                    f"{name:<30} {label:>9} {before[label]:>7.2f} {now[label]:>7.2f} "
                    f"{change:>+7.0%}"
                )


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def git_commit() -> str:
    try:
        sha = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def save_result(
    record: Mapping[str, Any], started_at: datetime.datetime, commit: str, suffix: str = ""
) -> None:
    """Writes ``record`` to bench/results/<UTC time>-<commit><suffix>.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{started_at:%Y%m%dT%H%M%SZ}-{commit}{suffix}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(BASE_DIR)}")


def check_worker_class(log_path: Path, expected: str) -> None:
    """The worker class gunicorn says it runs is the one the table will name."""
    running = re.search(r"Using worker: (\w+)", log_path.read_text())
    if running is None or running.group(1) != expected:
        raise SystemExit(f"gunicorn runs {running and running.group(1)!r}, not {expected!r}")


def worker_shape(workers: int, worker_class: str, threads: int) -> str:
    shape = f"gunicorn {workers} {worker_class} workers"
    return shape + (f" x {threads} threads" if worker_class == "gthread" else "")


def gunicorn_defaults() -> dict[str, Any]:
    """deploy/gunicorn.conf.py's own workers, worker class and threads (what it sets
    when no GUNICORN_* variable says otherwise)."""
    names = ("WORKERS", "GUNICORN_WORKERS", "GUNICORN_WORKER_CLASS", "GUNICORN_THREADS")
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        conf = runpy.run_path(str(GUNICORN_CONF))
    finally:
        os.environ.update(saved)
    return {key: conf[key] for key in ("workers", "worker_class", "threads")}


def hosts_comparison(results: Mapping[str, Result], rounds: Rounds) -> dict[str, Any]:
    """Metered calls/s through two hosts and through the first alone, in the same
    rounds: each side's req/s (the table's median round) and the median of the
    per-round ratios."""
    per_round = [round(r[AUTHORIZE].rps / r[AUTHORIZE_ONE_HOST].rps, 3) for r in rounds]
    return {
        "one_host_rps": results[AUTHORIZE_ONE_HOST].rps,
        "two_hosts_rps": results[AUTHORIZE].rps,
        "ratio": statistics.median(per_round),
        "per_round": per_round,
    }


def print_hosts(comparison: Mapping[str, Any], served: list[int]) -> None:
    c = comparison
    print(
        f"metered calls/s ({AUTHORIZE}): 1 host {c['one_host_rps']:.0f}, 2 hosts "
        f"{c['two_hosts_rps']:.0f}: {c['ratio']:.2f}x (rounds: "
        f"{', '.join(f'{x:.2f}' for x in c['per_round'])}); both hosts on the same cores; "
        f"requests each host served in the run (its access log; the first one also "
        f"serves the 1-host row): {', '.join(f'{n:,}' for n in served)}"
    )


def access_lines(log: Path) -> int:
    """The app's access-log lines (one per request) in a gunicorn log."""
    with log.open(errors="replace") as lines:
        return sum("lithtrix.access" in line for line in lines)


SECOND_SERVER_LINE = "# server ${LITHTRIX_UPSTREAM_2}"


@contextlib.contextmanager
def serving(
    shape: str,
    server_options: dict[str, Any],
    tmp_dir: Path,
    expected_class: str,
    *,
    hosts: int = 1,
    components: Mapping[str, list[int]] | None = None,
) -> Iterator[Stack]:
    """``hosts`` gunicorn instances, and in the production shape nginx in front of
    them, one upstream ``server`` line each (one nginx worker per core, as
    `worker_processes auto`); with two hosts, a second nginx in front of the first
    host alone (the "1 host" row). Yields the Stack wrk loads; ``components`` (the
    PostgreSQL and Redis servers' processes) join nginx's and gunicorn's in it."""
    with contextlib.ExitStack() as started:
        servers = []
        for number in range(hosts):
            options = dict(server_options)
            if number:
                options["log_path"] = Path(f"{server_options['log_path']}.{number + 1}")
            servers.append(started.enter_context(running_gunicorn(**options)))
            check_worker_class(options["log_path"], expected_class)
        stack = Stack(
            urls={"main": servers[0].url},
            components={"gunicorn": [server.process.pid for server in servers]},
            host_logs=[server.log_path for server in servers if server.log_path],
        )
        if shape == "production":
            fronts = {"main": [server.url for server in servers]}
            if hosts > 1:
                fronts["one_host"] = [servers[0].url]
            stack.components["nginx"] = []
            for front, upstreams in fronts.items():
                front_dir = Path(tempfile.mkdtemp(prefix=f"nginx-{front}-", dir=tmp_dir))
                replace = (
                    {SECOND_SERVER_LINE: f"server {upstreams[1].removeprefix('http://')}"}
                    if len(upstreams) > 1
                    else {}
                )
                nginx, front_url = start_front(
                    front_dir, upstreams[0], workers=os.cpu_count() or 1, replace=replace
                )
                started.callback(stop_nginx, nginx)
                stack.urls[front] = front_url
                stack.components["nginx"].append(nginx.pid)
                stack.nginx_logs.append(front_dir / "error.log")
        stack.components.update(components or {})
        yield stack


def nginx_problems(logs: list[Path]) -> list[str]:
    """nginx's error-log lines of level error or worse (a sync worker closing an
    upstream connection nginx meant to reuse would show here)."""
    levels = ("[error]", "[crit]", "[alert]", "[emerg]")
    lines: list[str] = []
    for log in logs:
        if log.exists():
            lines += [
                line for line in log.read_text().splitlines() if any(x in line for x in levels)
            ]
    return lines


def cpu_table(rounds: Rounds, cores: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per endpoint, each component's CPU over all its rounds (bench/cpu.py): its
    share of the machine's busy time and its % of the machine's capacity."""
    table = {}
    for name in rounds[0]:
        measured = [r[name] for r in rounds if r[name].cpu_by_component]
        if measured:
            table[name] = cpu.shares(
                cpu.add_up(m.cpu_by_component for m in measured),
                busy_s=sum(m.busy_s for m in measured),
                wall_s=sum(m.wall_s for m in measured),
                cores=cores,
            )
    return table


def stack_cpu_per_request(rounds: Rounds, name: str) -> float | None:
    """CPU ms per request of ``name`` used by the stack's own processes (every
    component, wrk included; not "other"), over all rounds: unlike the whole
    machine's figure, it does not grow with other work on a shared machine."""
    measured = [r[name] for r in rounds if r[name].cpu_by_component]
    requests = sum(m.requests for m in measured)
    if not requests:
        return None
    used = sum(one["cpu_s"] for m in measured for one in m.cpu_by_component.values())
    return round(used / requests * 1000, 3)


COMPONENT_ORDER = ["nginx", "gunicorn", "postgresql", "postgresql replica", "redis", "wrk"]
SHORT = {"postgresql replica": "pg replica"}


def print_cpu_table(table: Mapping[str, Mapping[str, Mapping[str, float]]], cores: int) -> None:
    if not table:
        return
    present = next(iter(table.values()))
    columns = [c for c in COMPONENT_ORDER if c in present] + ["other", "machine"]
    print(
        f"\nCPU by component: % of the machine's capacity ({cores} cores), "
        "(share of its busy CPU time), all rounds"
    )
    header = f"{'endpoint':<30}" + "".join(f" {SHORT.get(c, c):>14}" for c in columns)
    print(header)
    print("-" * len(header))
    for name in [n for n in TABLE_ORDER if n in table]:
        row = table[name]
        cells = "".join(
            f" {row[c]['capacity_pct']:>5.1f}% ({row[c]['share_of_busy_pct']:>3.0f}%)"
            for c in columns
        )
        print(f"{name:<30}{cells}")


def print_saturation(table: Mapping[str, Mapping[str, Mapping[str, float]]], cores: int) -> None:
    """Which component uses the most of the machine under the metered call."""
    for name in (AUTHORIZE, AUTHORIZE_ONE_HOST):
        if name not in table:
            continue
        row = table[name]
        first = cpu.saturates_first(row)
        busiest = ", ".join(
            f"{c} {row[c]['busiest_process_core_pct']:.0f}%"
            for c in COMPONENT_ORDER
            if c in row and "busiest_process_core_pct" in row[c]
        )
        print(
            f"{name}: the machine is {row['machine']['capacity_pct']:.0f}% busy; the largest "
            f"user is {first} ({row[first]['capacity_pct']:.0f}% of {cores} cores, "
            f"{row[first]['share_of_busy_pct']:.0f}% of the busy time); busiest single "
            f"process, % of one core: {busiest}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="wrk -d per measurement")
    parser.add_argument("--rounds", type=int, default=9, help="median of this many rounds")
    parser.add_argument(
        "--warm-up", type=int, default=10, help="seconds of load on each endpoint before round 1"
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument(
        "--scale-agents", type=int, default=1_000_000, help="0 skips the key-lookup scaling"
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="production",
        help="production: nginx (deploy/nginx/lithtrix.conf) in front of gunicorn with "
        "deploy/gunicorn.conf.py's defaults; direct: gunicorn alone, 4 sync workers",
    )
    parser.add_argument("--workers", type=int, default=0, help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="", help="gunicorn worker class")
    parser.add_argument(
        "--threads", type=int, default=0, help="threads per gthread worker (default 4)"
    )
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an app setting for this run (repeatable)",
    )
    parser.add_argument(
        "--hosts",
        type=int,
        choices=(1, 2),
        default=1,
        help="gunicorn instances behind nginx's upstream (production shape); with 2, "
        "/v1/authorize through the first host alone is measured beside them",
    )
    parser.add_argument(
        "--replica",
        action="store_true",
        help="the bench's database on a throwaway primary with a streaming replica "
        "(DATABASE_REPLICA_URL for the app); samples the replica's lag every 0.5 s",
    )
    parser.add_argument("--compare", type=Path, help="an earlier bench/results/*.json")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    if args.shape == "production" and not (
        shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")
    ):
        raise SystemExit("the production shape needs nginx: apt-get install -y nginx")
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not os.environ.get(
        "REDIS_URL"
    ):
        raise SystemExit("bench needs DATABASE_URL=postgres://... and REDIS_URL=redis://...")
    if args.hosts > 1 and args.shape != "production":
        raise SystemExit("--hosts 2 needs the production shape (nginx's upstream)")
    if args.compare and not args.compare.is_file():
        raise SystemExit(f"--compare: no such file {args.compare}")
    app_env = dict(item.split("=", 1) for item in args.app_env)
    defaults = gunicorn_defaults() if args.shape == "production" else {}
    workers = args.workers or defaults.get("workers", 4)
    worker_class = args.worker_class or defaults.get("worker_class", "sync")
    # Through deploy/gunicorn.conf.py's own variables: it gives threads to gthread only
    # (a --worker-class=sync flag beside its default threads would run gthread).
    # The file's threads when it runs gthread itself; else gthread's usual 4.
    default_threads = defaults["threads"] if defaults.get("worker_class") == "gthread" else 4
    threads = (args.threads or default_threads) if worker_class == "gthread" else 1
    gunicorn_env = {"GUNICORN_WORKER_CLASS": worker_class, "GUNICORN_THREADS": str(threads)}
    shape = worker_shape(workers, worker_class, threads)
    if args.hosts > 1:
        shape = f"{args.hosts} hosts of {shape} each, on the same {os.cpu_count()} cores"
    if args.shape == "production":
        shape = f"nginx (deploy/nginx/lithtrix.conf, {os.cpu_count()} workers) -> {shape}"
    cores = os.cpu_count() or 1
    started_at = datetime.datetime.now(datetime.UTC)
    commit = git_commit()  # the code measured, whatever happens to the tree meanwhile

    with contextlib.ExitStack() as resources:
        tmp_dir = Path(
            resources.enter_context(tempfile.TemporaryDirectory(prefix="lithtrix-bench-"))
        )
        env = app_environment(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "LITHTRIX_CACHE_PREFIX": f"bench{os.getpid()}",
                # Throughput, not refusals: no agent reaches a limit during a run.
                "LITHTRIX_FREE_RATE": "100000000/m",
                "LITHTRIX_PRO_RATE": "100000000/m",
                "LITHTRIX_FREE_CALL_LIMIT": "100000000",
                "GUNICORN_MAX_REQUESTS": "0",
                # nginx's address, as deploy/nginx/lithtrix.conf asks (harmless without).
                "LITHTRIX_TRUSTED_PROXIES": "127.0.0.1",
                **gunicorn_env,
                **app_env,
            }
        )
        replicated: ReplicatedPostgres | None = None
        if args.replica:
            replicated = resources.enter_context(replicated_postgres())
            copy_template(database_url, env, replicated.primary_url, replicated.bindir)
            env["DATABASE_URL"] = replicated.primary_url
            env["DATABASE_REPLICA_URL"] = replicated.replica_url
            servers = {
                "postgresql": [cpu.postmaster_pid(replicated.primary_url)],
                "postgresql replica": [cpu.postmaster_pid(replicated.replica_url)],
            }
        else:
            env["DATABASE_URL"] = migrated_database_url(database_url, "bench", env)
            servers = {"postgresql": [cpu.postmaster_pid(env["DATABASE_URL"])]}
        servers["redis"] = [cpu.redis_pid(env["REDIS_URL"])]
        files = {"agents": tmp_dir / "agents.txt", "users": tmp_dir / "users.txt"}
        seed(
            env,
            agents=args.agents,
            users=1000,
            keys_out=files["agents"],
            tokens_out=files["users"],
        )
        log_path = tmp_dir / "gunicorn.log"
        server_options = {
            "workers": workers,
            "env": env,
            "log_path": log_path,
        }
        settings_note = ", ".join(f"{k}={v}" for k, v in app_env.items()) or "default settings"
        print(
            f"{shape}, wrk -t2 -c16 -d{args.seconds}s ({args.warm_up} s warm-up in round 1), "
            f"{args.agents:,} agents, median of {args.rounds} interleaved rounds, "
            f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} "
            f"at start, {settings_note}",
            flush=True,
        )
        if args.hosts > 1:
            print(
                f"{args.hosts} app hosts share this machine's {cores} cores (with nginx, "
                "PostgreSQL, Redis and wrk): what a second host adds here is what the "
                "cores left over allow, not what a second machine would add.",
                flush=True,
            )
        endpoints = endpoints_for(args.hosts)
        sampler = LagSampler(replicated.primary_url, replicated.replica_url) if replicated else None
        # The stack as measured, served again for the scaled agents below.
        stack_shape = functools.partial(
            serving,
            args.shape,
            server_options,
            tmp_dir,
            worker_class,
            hosts=args.hosts,
            components=servers,
        )
        with (
            stack_shape() as stack,
            sampler.running() if sampler else contextlib.nullcontext(),
        ):
            if sampler is not None:
                stack.on_endpoint = lambda name: setattr(sampler, "endpoint", name)
            results, rounds = measure_rounds(
                stack, endpoints, files, args.seconds, args.rounds, args.warm_up
            )
            problems = nginx_problems(stack.nginx_logs)
            served = [access_lines(log) for log in stack.host_logs]
        print()
        print_table(results, rounds)
        cpu_by_endpoint = cpu_table(rounds, cores)
        print_cpu_table(cpu_by_endpoint, cores)
        print_saturation(cpu_by_endpoint, cores)
        shared = [
            name for name in ("postgresql", "redis") if not (args.replica and name == "postgresql")
        ]
        print(
            f"({' and '.join(shared)}: the machine's shared server(s), counted whole by "
            "process; the bench's load dominates while it runs, other work on them counts too)"
        )
        hosts = hosts_comparison(results, rounds) if args.hosts > 1 else None
        if hosts is not None:
            hosts["requests_per_host"] = served
            print_hosts(hosts, served)
        if args.shape == "production":
            print(f"nginx error log: {len(problems)} line(s) of level error or worse")
            for line in problems[:5]:
                print(f"  {line}")
        lag: dict[str, Any] | None = None
        if sampler is not None:
            lag = summarize(sampler.samples)
            print(
                f"\nreplica lag, sampled every {sampler.interval} s "
                f"({lag['samples_taken']} samples):"
            )
            for line in format_summary(lag):
                print(f"  {line}")

        scaled: dict[str, Result] = {}
        scaled_rounds: Rounds = []
        if args.scale_agents > args.agents:
            started = time.monotonic()
            seed(env, agents=args.scale_agents - args.agents, keys_out=files["agents"])
            print(f"\nseeded {args.scale_agents:,} agents in {time.monotonic() - started:.0f}s")
            # Against DRF's TokenAuthentication (1,000 users), measured beside them in
            # the same rounds: the ratio, unlike req/s, does not move with the machine.
            scaled_endpoints = [
                e for e in ENDPOINTS if e.credentials == "agents" or e.name == TOKEN
            ]
            with stack_shape() as stack:
                scaled, scaled_rounds = measure_rounds(
                    stack, scaled_endpoints, files, args.seconds, args.rounds, args.warm_up
                )
            print(f"\nkey lookup: {args.agents:,} agents -> {args.scale_agents:,} agents")
            for name in (ME, AUTHORIZE):
                before = statistics.median(round_ratios(rounds, name, "x token"))
                after = statistics.median(round_ratios(scaled_rounds, name, "x token"))
                r = scaled[name]
                print(
                    f"{name:<30} x token {before:.2f} -> {after:.2f} ({after / before:.2f}x); "
                    f"{r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
                    f"non-2xx {r.non_2xx}"
                )

    checks = targets(results, rounds, args.shape)
    metered_cpu = cpu_per_request(rounds, AUTHORIZE)
    print()
    print(
        f"CPU per metered call ({AUTHORIZE}): {metered_cpu:.3f} ms of the whole machine "
        f"({1000 / metered_cpu:.0f} metered calls per CPU-second)"
    )
    stack_cpu = stack_cpu_per_request(rounds, AUTHORIZE)
    if stack_cpu:
        print(
            f"  of which the stack's own processes (nginx, gunicorn, PostgreSQL, Redis, wrk; "
            f"all rounds): {stack_cpu:.3f} ms ({1000 / stack_cpu:.0f} metered calls per "
            "CPU-second)"
        )
    print_targets(checks)
    record = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "commit": commit,
        "shape": args.shape,
        "worker_shape": shape,
        "cpu_ms_per_metered_call": metered_cpu,
        "stack_cpu_ms_per_metered_call": stack_cpu,
        "cpu_cores": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "wrk": f"-t2 -c16 -d{args.seconds}s",
        "rounds": args.rounds,
        "warm_up_s": args.warm_up,
        "agents": args.agents,
        "hosts": args.hosts,
        "app_env": app_env,
        "results": {name: asdict(r) for name, r in results.items()},
        "ratios": ratios(rounds),
        "per_round": [{name: asdict(r) for name, r in one.items()} for one in rounds],
        "targets": checks,
        "cpu_by_component": cpu_by_endpoint,
        "saturates_first": {
            name: cpu.saturates_first(row) for name, row in cpu_by_endpoint.items()
        },
        "hosts_comparison": hosts,
        "nginx_errors": problems,
        "replica_lag": lag,
        "replica_lag_samples": sampler.record() if sampler else None,
        "scaled_agents": args.scale_agents if scaled else None,
        "scaled_results": {name: asdict(r) for name, r in scaled.items()},
        "scaled_x_token": {
            name: statistics.median(round_ratios(scaled_rounds, name, "x token"))
            for name in (ME, AUTHORIZE)
            if scaled_rounds
        },
    }
    if args.compare:
        compare(args.compare, record)
    if not args.no_save:
        save_result(record, started_at, commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
