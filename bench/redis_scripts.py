"""Rate-limit counting scripts per second: one throwaway redis-server against a
throwaway Redis Cluster (3 masters, 3 replicas; testing/redis_cluster.py).

    .venv/bin/python bench/redis_scripts.py            # or: make bench-redis [REDIS_BENCH_ARGS=...]

Each of ``--processes`` client processes runs the app's own counting script
(``_COUNT_HIT`` in lithtrix/core/cache.py, by EVALSHA, one key, EVAL when the
server lost it) as fast as it can for ``--seconds``, each call on a key of one of
``--agents`` agents' counters (named as lithtrix/core/ratelimit.py names them),
through redis-py's ``redis.Redis`` (single) or ``redis.cluster.RedisCluster``
(cluster). One script per round trip, as the app sends it (one per rate-limited
request); ``--pipeline N`` adds a run on the single server with N scripts per
round trip, labelled so: the app cannot send them that way (and redis-py's
cluster pipeline refuses EVALSHA). The targets alternate over ``--rounds`` and
each one's median round is kept. Prints scripts/s, latency per round trip, and
the CPU each server process and the clients used (bench/cpu.py). Never touches
the machine's shared Redis. Writes bench/results/<UTC time>-<git sha>-redis.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench import cpu  # noqa: E402
from lithtrix.core.cache import _COUNT_HIT, _COUNT_HIT_SHA  # noqa: E402
from testing.redis_cluster import _binary, running_cluster  # noqa: E402
from testing.servers import free_port  # noqa: E402

WINDOW_SECONDS = 60


def counter_keys(agents: int, seed: int) -> list[str]:
    """Agents' per-minute counters as the app names them (Django's cache prefix and
    version, then ``rl:<scope>:<digest>:<window end>``), in a random order."""
    end = int(time.time()) // WINDOW_SECONDS * WINDOW_SECONDS + WINDOW_SECONDS
    keys = [
        f":1:rl:agent_free:{hashlib.sha256(f'agent-{n}|100/60'.encode()).hexdigest()[:32]}:{end}"
        for n in range(agents)
    ]
    random.Random(seed).shuffle(keys)  # noqa: S311 - spreads keys, not a secret
    return keys


def _client(kind: str, port: int) -> Any:
    import redis
    from redis.cluster import RedisCluster as ClusterClient

    if kind == "cluster":
        return ClusterClient(host="127.0.0.1", port=port)
    return redis.Redis(host="127.0.0.1", port=port)


def _count(client: Any, key: str) -> None:
    from redis.exceptions import NoScriptError

    try:
        client.evalsha(_COUNT_HIT_SHA, 1, key, WINDOW_SECONDS + 5)
    except NoScriptError:
        client.eval(_COUNT_HIT, 1, key, WINDOW_SECONDS + 5)


def client_process(
    kind: str,
    port: int,
    keys: list[str],
    pipeline: int,
    seconds: float,
    start: Any,
    out: Any,
) -> None:
    """One client: waits for ``start``, then counts until ``seconds`` have passed;
    puts (scripts, elapsed, round-trip latencies in ms, own CPU s) on ``out``, or
    the error that stopped it."""
    try:
        out.put(_load(kind, port, keys, pipeline, seconds, start))
    except Exception as error:
        out.put(error)
        raise


def _load(
    kind: str, port: int, keys: list[str], pipeline: int, seconds: float, start: Any
) -> tuple[int, float, list[float], float]:
    client = _client(kind, port)
    _count(client, keys[0])  # connected, script loaded, slots known
    latencies: list[float] = []
    scripts = 0
    start.wait()
    cpu_before = time.process_time()
    began = time.perf_counter()
    deadline = began + seconds
    index = 0
    while True:
        sent = time.perf_counter()
        if sent >= deadline:
            break
        if pipeline:
            pipe = client.pipeline(transaction=False)
            for _ in range(pipeline):
                pipe.evalsha(_COUNT_HIT_SHA, 1, keys[index % len(keys)], WINDOW_SECONDS + 5)
                index += 1
            pipe.execute()
            scripts += pipeline
        else:
            _count(client, keys[index % len(keys)])
            index += 1
            scripts += 1
        latencies.append((time.perf_counter() - sent) * 1000)
    elapsed = time.perf_counter() - began
    cpu_s = time.process_time() - cpu_before
    client.close()
    return scripts, elapsed, latencies, cpu_s


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def run_load(
    kind: str, port: int, server_pids: list[int], args: argparse.Namespace, pipeline: int
) -> dict[str, Any]:
    """``args.processes`` clients against the server(s) at ``port`` for ``args.seconds``."""
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    processes = [
        context.Process(
            target=client_process,
            args=(kind, port, counter_keys(args.agents, seed), pipeline, args.seconds, start, out),
        )
        for seed in range(args.processes)
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # every client connected and warmed up
    components = {f"redis-server :{pid}": [pid] for pid in server_pids}
    before = cpu.snapshot(components)
    busy_before = _busy()
    start.set()
    results = [out.get(timeout=args.seconds + 60) for _ in processes]
    for result in results:
        if isinstance(result, Exception):
            raise SystemExit(f"a client process failed: {result!r}")
    busy = _busy() - busy_before
    used = cpu.used_seconds(before, cpu.snapshot(components), components)
    for process in processes:
        process.join(timeout=30)
    scripts = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results)
    latencies = [ms for r in results for ms in r[2]]
    server_cpu_s = sum(one["cpu_s"] for one in used.values())
    return {
        "scripts_per_s": round(scripts / elapsed, 1),
        "scripts": scripts,
        "seconds": round(elapsed, 3),
        "round_trip_p50_ms": round(percentile(latencies, 0.5), 3),
        "round_trip_p99_ms": round(percentile(latencies, 0.99), 3),
        # Each server process's CPU in % of one core (redis-server runs scripts on one
        # thread), and all clients' CPU in % of one core.
        "server_core_pct": {
            name: round(100 * one["cpu_s"] / elapsed, 1) for name, one in used.items()
        },
        "servers_cpu_s": round(server_cpu_s, 3),
        "clients_core_pct": round(100 * sum(r[3] for r in results) / elapsed, 1),
        "machine_busy_pct": round(100 * busy / (elapsed * (os.cpu_count() or 1)), 1),
    }


def _busy() -> float:
    from bench.run import busy_cpu_seconds

    return busy_cpu_seconds()


@contextlib.contextmanager
def single_server(directory: Path) -> Iterator[tuple[int, list[int]]]:
    """A throwaway redis-server on a free loopback port (LITHTRIX_TEST_PORTS)."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [
            _binary("redis-server"),
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
            *("--logfile", str(directory / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = _client("single", port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
            except Exception as error:  # redis-py's ConnectionError while it starts
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server on {port} did not start") from error
                time.sleep(0.05)
        client.close()
        yield port, [process.pid]
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, median kept")
    parser.add_argument("--agents", type=int, default=10_000, help="counters the keys spread over")
    parser.add_argument(
        "--pipeline",
        type=int,
        default=0,
        help="also measure N scripts per round trip (not what the app can do)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()

    from bench.run import git_commit, save_result

    started_at = datetime.datetime.now(datetime.UTC)
    commit = git_commit()
    cores = os.cpu_count() or 1
    print(
        f"the counting script (lithtrix/core/cache.py _COUNT_HIT, EVALSHA, 1 key) from "
        f"{args.processes} client processes, {args.seconds:g} s per measurement, median of "
        f"{args.rounds} alternating rounds, keys over {args.agents:,} agents' counters; "
        f"{cores} CPU cores shared by the clients and every server (the cluster's 3 masters "
        f"and 3 replicas run on the same {cores} cores), load average "
        f"{os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    modes = [0] + ([args.pipeline] if args.pipeline else [])
    measured: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="lithtrix-redis-bench-") as tmp,
        single_server(Path(tmp)) as (single_port, single_pids),
        running_cluster(Path(tmp) / "cluster") as cluster,
    ):
        targets = {
            "single": (single_port, single_pids),
            "cluster": (
                cluster.nodes[0].port,
                [node.process.pid for node in cluster.nodes if node.process is not None],
            ),
        }
        for number in range(args.rounds):
            order = list(targets) if number % 2 == 0 else list(targets)[::-1]
            for kind in order:
                port, pids = targets[kind]
                for pipeline in modes if kind == "single" else [0]:
                    label = label_for(kind, pipeline)
                    measured.setdefault(label, []).append(
                        run_load(kind, port, pids, args, pipeline)
                    )
    medians = {
        label: sorted(runs, key=lambda r: r["scripts_per_s"])[len(runs) // 2]
        for label, runs in measured.items()
    }
    print()
    header = (
        f"{'target':<44} {'scripts/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'clients %core':>13}  redis-server % of one core (each process)"
    )
    print(header)
    print("-" * len(header))
    for label, r in medians.items():
        servers = " ".join(f"{pct:.0f}" for pct in r["server_core_pct"].values())
        print(
            f"{label:<44} {r['scripts_per_s']:>10,.0f} {r['round_trip_p50_ms']:>7.2f} "
            f"{r['round_trip_p99_ms']:>7.2f} {r['clients_core_pct']:>13.0f}  {servers}"
        )
    ratios = {
        "cluster / single": round(
            medians[label_for("cluster", 0)]["scripts_per_s"]
            / medians[label_for("single", 0)]["scripts_per_s"],
            3,
        )
    }
    if args.pipeline:
        ratios[f"single pipelined x{args.pipeline} / single"] = round(
            medians[label_for("single", args.pipeline)]["scripts_per_s"]
            / medians[label_for("single", 0)]["scripts_per_s"],
            3,
        )
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    print(
        f"(all on {cores} cores: the clients, the single server and the cluster's six "
        "nodes compete for them, so these figures bound what one machine does, not what "
        "three masters on their own machines would)"
    )
    record = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "commit": commit,
        "cpu_cores": cores,
        "processes": args.processes,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "agents": args.agents,
        "pipeline": args.pipeline,
        "results": medians,
        "per_round": measured,
        "ratios": ratios,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.no_save:
        save_result(record, started_at, commit, "-redis")
    return 0


def label_for(kind: str, pipeline: int) -> str:
    name = "single redis-server" if kind == "single" else "Redis Cluster, 3 masters + 3 replicas"
    return f"{name}, pipelined x{pipeline}" if pipeline else name


if __name__ == "__main__":
    sys.exit(main())
