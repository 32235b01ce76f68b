"""Benchmark the production stack on loopback and print a table of ratios.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/run.py            # or: make bench [BENCH_ARGS=...]

By default measures the production shape: nginx with deploy/nginx/lithtrix.conf in
front of gunicorn with deploy/gunicorn.conf.py's defaults (its worker class, threads
and workers); ``--shape direct`` measures gunicorn alone on its port, 4 sync workers
(``--workers``, ``--worker-class``, ``--threads`` change either). The app runs on a
fresh PostgreSQL database (<name>_bench, copied from a migrated template: see
bench/database.py) and Redis; wrk loads each endpoint (-t2 -c16 -d3s, after a 2 s
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
import json
import os
import platform
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.database import migrated_database_url  # noqa: E402
from testing.nginx import start_front, stop_nginx  # noqa: E402
from testing.servers import GUNICORN_CONF, app_environment, running_gunicorn  # noqa: E402

LUA = BASE_DIR / "bench" / "tokens.lua"
RESULTS_DIR = BASE_DIR / "bench" / "results"
BARE, TOKEN, THROTTLED = (
    "bare Django JSON view",
    "DRF TokenAuthentication",
    "DRF Token + UserRateThrottle",
)
ME, AUTHORIZE = "GET /v1/me", "GET /v1/authorize"
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
TABLE_ORDER = [BARE, TOKEN, THROTTLED, ME, AUTHORIZE]


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


def run_wrk(url: str, *, seconds: int, credentials: Path | None, scheme: str) -> Result:
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    env = dict(os.environ)
    if credentials is not None:
        command += ["-s", str(LUA)]
        env.update(BENCH_TOKENS=str(credentials), BENCH_SCHEME=scheme)
    busy_before = busy_cpu_seconds()
    output = subprocess.run(  # noqa: S603
        [*command, url], env=env, capture_output=True, text=True, check=True
    ).stdout
    busy = busy_cpu_seconds() - busy_before
    requests = int(_match(r"(\d+) requests in", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Result(
        rps=float(_match(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_latency(output, "50"),
        p99_ms=_latency(output, "99"),
        requests=requests,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        cpu_ms=round(busy / max(requests, 1) * 1000, 3),
    )


def measure(
    base_url: str, endpoint: Endpoint, files: dict[str, Path], seconds: int, *, warm_up: bool
) -> Result:
    credentials = files.get(endpoint.credentials) if endpoint.credentials else None
    scheme = "Token" if endpoint.credentials == "users" else "Bearer"
    url = base_url + endpoint.path
    if warm_up:
        run_wrk(url, seconds=2, credentials=credentials, scheme=scheme)
    return run_wrk(url, seconds=seconds, credentials=credentials, scheme=scheme)


Rounds = list[dict[str, Result]]


def measure_rounds(
    base_url: str, endpoints: list[Endpoint], files: dict[str, Path], seconds: int, rounds: int
) -> tuple[dict[str, Result], Rounds]:
    """Each endpoint ``rounds`` times, interleaved, so that a burst of outside load
    hits all of them alike; per endpoint, the round with the median req/s is kept.
    The rounds are returned too: ratios are taken within each round (see ``ratios``).

    Within a round the endpoints run in the order given (each compared pair side by
    side: see ENDPOINTS), and every other round in reverse, so a machine that speeds
    up or slows down during a round favours neither side of a pair."""
    all_rounds: Rounds = []
    for number in range(rounds):
        order = endpoints if number % 2 == 0 else endpoints[::-1]
        measured = {
            e.name: measure(base_url, e, files, seconds, warm_up=number == 0) for e in order
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


@contextlib.contextmanager
def serving(
    shape: str, server_options: dict[str, Any], tmp_dir: Path, expected_class: str
) -> Iterator[str]:
    """gunicorn, and in the production shape nginx in front of it (one nginx worker
    per core, as `worker_processes auto`); yields the URL wrk loads."""
    log_path = server_options["log_path"]
    with running_gunicorn(**server_options) as server:
        check_worker_class(log_path, expected_class)
        if shape == "direct":
            yield server.url
            return
        front_dir = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp_dir))
        nginx, front_url = start_front(front_dir, server.url, workers=os.cpu_count() or 1)
        try:
            yield front_url
        finally:
            stop_nginx(nginx)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="wrk -d per measurement")
    parser.add_argument("--rounds", type=int, default=9, help="median of this many rounds")
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
    if args.compare and not args.compare.is_file():
        raise SystemExit(f"--compare: no such file {args.compare}")
    app_env = dict(item.split("=", 1) for item in args.app_env)
    defaults = gunicorn_defaults() if args.shape == "production" else {}
    workers = args.workers or defaults.get("workers", 4)
    worker_class = args.worker_class or defaults.get("worker_class", "sync")
    # Through deploy/gunicorn.conf.py's own variables: it gives threads to gthread only
    # (a --worker-class=sync flag beside its default threads would run gthread).
    threads = (args.threads or defaults.get("threads", 4)) if worker_class == "gthread" else 1
    gunicorn_env = {"GUNICORN_WORKER_CLASS": worker_class, "GUNICORN_THREADS": str(threads)}
    shape = worker_shape(workers, worker_class, threads)
    if args.shape == "production":
        shape = f"nginx (deploy/nginx/lithtrix.conf, {os.cpu_count()} workers) -> {shape}"
    started_at = datetime.datetime.now(datetime.UTC)
    commit = git_commit()  # the code measured, whatever happens to the tree meanwhile

    with tempfile.TemporaryDirectory(prefix="lithtrix-bench-") as tmp:
        tmp_dir = Path(tmp)
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
        env["DATABASE_URL"] = migrated_database_url(database_url, "bench", env)
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
            f"{shape}, wrk -t2 -c16 -d{args.seconds}s (2 s warm-up in round 1), "
            f"{args.agents:,} agents, median of {args.rounds} interleaved rounds, "
            f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} "
            f"at start, {settings_note}",
            flush=True,
        )
        with serving(args.shape, server_options, tmp_dir, worker_class) as url:
            results, rounds = measure_rounds(url, ENDPOINTS, files, args.seconds, args.rounds)
        print()
        print_table(results, rounds)

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
            with serving(args.shape, server_options, tmp_dir, worker_class) as url:
                scaled, scaled_rounds = measure_rounds(
                    url, scaled_endpoints, files, args.seconds, args.rounds
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
    print_targets(checks)
    record = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "commit": commit,
        "shape": args.shape,
        "worker_shape": shape,
        "cpu_ms_per_metered_call": metered_cpu,
        "cpu_cores": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "wrk": f"-t2 -c16 -d{args.seconds}s",
        "rounds": args.rounds,
        "agents": args.agents,
        "app_env": app_env,
        "results": {name: asdict(r) for name, r in results.items()},
        "ratios": ratios(rounds),
        "per_round": [{name: asdict(r) for name, r in one.items()} for one in rounds],
        "targets": checks,
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
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{started_at:%Y%m%dT%H%M%SZ}-{commit}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwritten to {path.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
