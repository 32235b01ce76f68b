"""Profile the hot paths in-process with pyinstrument; count SQL and Redis round trips.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/profile.py \
        [--requests 3000] [/v1/authorize /v1/me /bench/drf-token ...]

Runs on a fresh <name>_profile database (bench.settings, 1,000 agents and users),
calls Django's WSGI handler directly (no server, no network: only the app's own
work is measured) and prints, per path: microseconds per request, SQL queries and
Redis commands per request, and pyinstrument's call tree.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.database import migrated_database_url  # noqa: E402
from testing.servers import app_environment  # noqa: E402

DEFAULT_PATHS = [
    "/bench/bare",
    "/bench/drf-plain",
    "/bench/drf-token",
    "/bench/drf-token-throttle",
    "/v1/me",
    "/v1/authorize",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--no-tree", action="store_true", help="timings and counts only")
    parser.add_argument(
        "--cpu-functions",
        type=int,
        default=0,
        metavar="N",
        help="also list the N functions with the most CPU time of their own (cProfile)",
    )
    parser.add_argument("paths", nargs="*", default=DEFAULT_PATHS)
    args = parser.parse_args()
    if os.environ.get("LITHTRIX_REDIS_CLUSTER", "").strip().lower() in {"1", "true", "yes", "on"}:
        # Its Redis figures (commands counted on redis.Redis, INFO cpu of one server)
        # describe a single Redis; on a cluster they would read as zero and one node.
        raise SystemExit("bench/profile.py measures a single Redis: unset LITHTRIX_REDIS_CLUSTER.")

    tmp_dir = Path(tempfile.mkdtemp(prefix="lithtrix-profile-"))
    env = app_environment(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "LITHTRIX_CACHE_PREFIX": f"profile{os.getpid()}",
            "LITHTRIX_FREE_RATE": "100000000/m",
            "LITHTRIX_FREE_CALL_LIMIT": "100000000",
            "LITHTRIX_ACCESS_LOG_LEVEL": "WARNING",
        }
    )
    env["DATABASE_URL"] = migrated_database_url(os.environ["DATABASE_URL"], "profile", env)
    import subprocess

    agents, users = tmp_dir / "agents.txt", tmp_dir / "users.txt"
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "bench.seed",
            "--agents=1000",
            "--users=1000",
            f"--keys-out={agents}",
            f"--tokens-out={users}",
        ],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )
    os.environ.update(env)

    import django

    django.setup()
    import redis
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    redis_commands = [0]
    original_execute = redis.Redis.execute_command

    def counting_execute(self, *a, **kw):
        redis_commands[0] += 1
        return original_execute(self, *a, **kw)

    redis.Redis.execute_command = counting_execute  # type: ignore[method-assign]  # counting
    original_pipeline_execute = redis.client.Pipeline.execute

    def counting_pipeline(self, *a, **kw):
        redis_commands[0] += 1
        return original_pipeline_execute(self, *a, **kw)

    redis.client.Pipeline.execute = counting_pipeline  # type: ignore[method-assign]  # counting

    app = WSGIHandler()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    keys = agents.read_text().split()
    tokens = users.read_text().split()

    def call(path: str, n: int) -> str:
        if path.startswith("/bench/drf"):
            auth = f"Token {tokens[n % len(tokens)]}"
        else:
            auth = f"Bearer {keys[n % len(keys)]}"
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": auth,
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        status: list[str] = []

        def start_response(s: str, h: list[tuple[str, str]], *_: object) -> None:
            status.append(s)

        b"".join(app(environ, start_response))  # type: ignore[arg-type]
        return status[0]

    for path in args.paths:
        # Warm-up: connections, caches, imports, and every key once (a key's first
        # authentication in a process writes its "seen valid" marker to Redis).
        for n in range(max(len(keys), len(tokens)) + 200):
            call(path, n)
        redis_commands[0] = 0
        with CaptureQueriesContext(connection) as queries:
            statuses = {call(path, n) for n in range(100)}
        sql_per_request = len(queries.captured_queries) / 100
        redis_per_request = redis_commands[0] / 100
        # Without the profiler: wall time and CPU per request, split by process.
        started, cpu = time.perf_counter(), CpuClocks(backend_pid)
        for n in range(args.requests):
            call(path, n)
        elapsed = time.perf_counter() - started
        app_cpu, db_cpu, redis_cpu = cpu.spent()
        print(
            f"\n=== {path}: {elapsed / args.requests * 1e6:.0f} us/request in-process, "
            f"{sql_per_request:g} SQL queries, {redis_per_request:g} Redis round trips "
            f"per request, answers {sorted(statuses)}"
            f"\n    CPU per request: app {app_cpu / args.requests * 1e6:.0f} us, "
            f"PostgreSQL backend {db_cpu / args.requests * 1e6:.0f} us, "
            f"Redis server {redis_cpu / args.requests * 1e6:.0f} us"
        )
        if not args.no_tree:
            profiler = Profiler(interval=0.0002)
            profiler.start()
            for n in range(args.requests):
                call(path, n)
            profiler.stop()
        for query in queries.captured_queries[:3]:
            print(f"    SQL: {query['sql'][:160]}")
        if not args.no_tree:
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        if args.cpu_functions:
            print_cpu_functions(functools.partial(run_many, call, path, args.requests), args)
    return 0


def run_many(call, path: str, requests: int) -> None:
    for n in range(requests):
        call(path, n)


def print_cpu_functions(run, args: argparse.Namespace) -> None:
    """The functions with the most CPU time of their own, per request (the C profiler
    behind cProfile, on the process's CPU clock; its overhead inflates small
    functions). _lsprof directly: this file's name hides the standard profile module."""
    import _lsprof

    profiler = _lsprof.Profiler(time.process_time)
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
    rows = sorted(profiler.getstats(), key=lambda entry: entry.inlinetime, reverse=True)
    print(f"    own CPU per request, top {args.cpu_functions} (cProfile):")
    for entry in rows[: args.cpu_functions]:
        code = entry.code
        where = (
            f"{'/'.join(code.co_filename.split('/')[-2:])}:{code.co_firstlineno} {code.co_name}"
            if not isinstance(code, str)
            else code
        )
        print(
            f"    {entry.inlinetime / args.requests * 1e6:7.1f} us  "
            f"{entry.callcount / args.requests:5.1f} calls  {where}"
        )


class CpuClocks:
    """CPU seconds spent since creation by this process, one PostgreSQL backend
    (same machine: /proc) and the Redis server (INFO cpu; the whole server)."""

    def __init__(self, backend_pid: int) -> None:
        self.backend_pid = backend_pid
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        from django.core.cache import cache

        try:
            stat = Path(f"/proc/{self.backend_pid}/stat").read_text()
        except OSError:  # PostgreSQL on another machine or in another container
            db = float("nan")
        else:
            fields = stat.rsplit(")", 1)[1].split()
            db = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        info = cache._cache.get_client().info("cpu")  # type: ignore[attr-defined]
        redis_cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return time.process_time(), db, redis_cpu

    def spent(self) -> tuple[float, float, float]:
        now = self._now()
        return tuple(b - a for a, b in zip(self.start, now, strict=True))  # type: ignore[return-value]


if __name__ == "__main__":
    sys.exit(main())
