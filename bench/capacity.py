"""The runs the capacity model (docs/scaling.md) is written from, one after the
other, then one summary.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/capacity.py
    make capacity [CAPACITY_ARGS=--short]

1. the production-shape bench three times (1 host): the targets judged over the runs;
2. the production-shape bench with two hosts (1 vs 2 hosts in the same rounds);
3. the same with gthread's 4 workers x 4 threads instead of the default 4 sync workers
   (the worker class is chosen by measurement);
4. Redis scripts/s, one redis-server against a Redis Cluster (bench/redis_scripts.py);
5. the bench on a primary with a streaming replica: the replica's lag.
Citus is not run: it is not installable here (the summary says so).

Each step writes its bench/results/*.json; the summary is read from those files.
``--short`` runs every step in a few seconds, to prove the sequence works.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
# About 25 minutes on this 2-core machine: a bench run is 9 rounds x 5 endpoints
# x 3 s of wrk, 5 x 10 s of warm-up and ~35 s of start-up (database copy, seeding,
# servers): ~3.5 min, the 2-host run (6 rows) ~4.2; Redis 3 rounds x 3 targets x
# (5 s + 1 s to connect): ~1 min.
FULL = {
    "bench": ["--rounds", "9", "--seconds", "3", "--scale-agents", "0"],
    "redis": ["--processes", "4", "--seconds", "5", "--rounds", "3", "--pipeline", "16"],
}
SHORT = {
    "bench": ["--rounds", "2", "--seconds", "1", "--warm-up", "1", "--scale-agents", "0"],
    "redis": ["--processes", "2", "--seconds", "1", "--rounds", "1", "--pipeline", "16"],
}


def steps(short: bool) -> list[tuple[str, list[str]]]:
    args = SHORT if short else FULL
    bench = [sys.executable, "bench/run.py", *args["bench"]]
    return [
        ("1 host, run 1", bench),
        ("1 host, run 2", bench),
        ("1 host, run 3", bench),
        ("2 hosts", [*bench, "--hosts", "2"]),
        (
            "gthread workers",
            [*bench, "--worker-class", "gthread", "--workers", "4", "--threads", "4"],
        ),
        ("redis scripts", [sys.executable, "bench/redis_scripts.py", *args["redis"]]),
        ("replica", [*bench, "--replica"]),
    ]


def run_step(name: str, command: list[str]) -> dict[str, Any]:
    """Runs one step, its output shown as it comes; returns the result file's record."""
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603
        command, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    written = None
    for line in process.stdout:
        print(line, end="", flush=True)
        match = re.match(r"written to (\S+)", line.strip())
        if match:
            written = BASE_DIR / match.group(1)
    if process.wait() != 0 or written is None:
        raise SystemExit(f"{name} failed (exit {process.returncode})")
    record = json.loads(written.read_text())
    record["_file"] = str(written.relative_to(BASE_DIR))
    record["_seconds"] = round(time.monotonic() - started)
    return record


def _authorize_cpu(record: Mapping[str, Any]) -> str:
    row = record.get("cpu_by_component", {}).get("GET /v1/authorize", {})
    first = record.get("saturates_first", {}).get("GET /v1/authorize", "")
    if not row or not first:
        return "no CPU by component"
    parts = [
        f"{name} {row[name]['capacity_pct']:.0f}%"
        for name in ("nginx", "gunicorn", "postgresql", "postgresql replica", "redis", "wrk")
        if name in row
    ]
    return (
        f"largest user {first}; % of capacity: {', '.join(parts)}, other "
        f"{row['other']['capacity_pct']:.0f}% (machine {row['machine']['capacity_pct']:.0f}%)"
    )


def _metered_cpu(record: Mapping[str, Any]) -> str:
    """CPU ms per metered call: the whole machine's (the stack's own)."""
    stack = record.get("stack_cpu_ms_per_metered_call")
    own = f" ({stack:.3f})" if stack else ""
    return f"{record['cpu_ms_per_metered_call']:.3f}{own}"


def summary(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The summary's lines from the steps' records (keyed by step name)."""
    lines = []
    one_host = [record for name, record in runs.items() if name.startswith("1 host")]
    if one_host:
        lines.append(f"Production shape, 1 host, {len(one_host)} runs:")
        for record in one_host:
            metered = record["results"]["GET /v1/authorize"]["rps"]
            stack = record.get("stack_cpu_ms_per_metered_call")
            lines.append(
                f"  {record['_file']}: {metered:.0f} metered calls/s, CPU per metered call "
                f"{record['cpu_ms_per_metered_call']:.3f} ms (the stack's own: "
                f"{f'{stack:.3f} ms' if stack else '?'}); {_authorize_cpu(record)}"
            )
        checks: dict[str, list[dict[str, Any]]] = {}
        for record in one_host:
            for check in record["targets"]:
                checks.setdefault(check["check"], []).append(check)
        for name, results in checks.items():
            met = sum(1 for check in results if check["met"])
            values = ", ".join(f"{check['value']:.2f}" for check in results)
            lines.append(f"  target {name}: met in {met} of {len(results)} runs ({values})")
    if "2 hosts" in runs:
        record = runs["2 hosts"]
        hosts = record["hosts_comparison"]
        lines.append(
            f"2 hosts ({record['_file']}): metered calls/s 1 host {hosts['one_host_rps']:.0f}, "
            f"2 hosts {hosts['two_hosts_rps']:.0f} ({hosts['ratio']:.2f}x, same rounds; both "
            f"hosts on the same {record['cpu_cores']} cores); requests per host "
            f"{hosts.get('requests_per_host')}; {_authorize_cpu(record)}"
        )
    if "gthread workers" in runs and one_host:
        other = runs["gthread workers"]

        def ratio(record: Mapping[str, Any], name: str, label: str) -> float:
            return float(record["ratios"][name][label])

        default = [ratio(r, "GET /v1/authorize", "x tok+thr") for r in one_host]
        default_cpu = ", ".join(_metered_cpu(r) for r in one_host)
        lines.append(
            f"worker class (separate runs): {one_host[0]['worker_shape']}: /v1/authorize "
            f"x Token+throttle {', '.join(f'{x:.2f}' for x in default)}, CPU per metered call "
            f"(the stack's own) {default_cpu} ms; "
            f"{other['worker_shape']}: {ratio(other, 'GET /v1/authorize', 'x tok+thr'):.2f}, "
            f"{_metered_cpu(other)} ms; nginx error lines "
            f"{len(other.get('nginx_errors', []))}"
        )
    if "redis scripts" in runs:
        record = runs["redis scripts"]
        parts = [f"{label} {r['scripts_per_s']:,.0f}" for label, r in record["results"].items()]
        ratios = ", ".join(f"{name} {value:.2f}x" for name, value in record["ratios"].items())
        lines.append(
            f"Redis scripts/s ({record['_file']}, {record['processes']} client processes, "
            f"all on {record['cpu_cores']} cores): {'; '.join(parts)}; {ratios}"
        )
    if "replica" in runs:
        record = runs["replica"]
        lag = record["replica_lag"]["all"]
        if lag.get("samples"):
            lines.append(
                f"Replica lag ({record['_file']}, {lag['samples']} samples while WAL flowed): "
                f"p50 {lag['p50_ms']:.1f} ms / {lag['p50_bytes']:,} B, p99 {lag['p99_ms']:.1f} "
                f"ms / {lag['p99_bytes']:,} B, max {lag['max_ms']:.1f} ms / "
                f"{lag['max_bytes']:,} B"
            )
        else:
            lines.append(f"Replica lag ({record['_file']}): no sample while WAL flowed")
    lines.append("Citus: not run (not installable here); the model's Citus step stays on paper.")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="every step in a few seconds")
    args = parser.parse_args(argv)
    started = time.monotonic()
    runs = {name: run_step(name, command) for name, command in steps(args.short)}
    print(f"\n=== summary ({(time.monotonic() - started) / 60:.1f} min in all)")
    for name, record in runs.items():
        print(f"  {name}: {record['_seconds']} s")
    for line in summary(runs):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
