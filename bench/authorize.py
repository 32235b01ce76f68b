"""Throughput of ANY /v1/authorize (and GET /v1/me for comparison) under gunicorn + wrk.

Not a test: it prints figures. Needs PostgreSQL, Redis and wrk:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix_bench \\
    REDIS_URL=redis://127.0.0.1:6379/15 \\
    .venv/bin/python bench/authorize.py [--workers 4] [--seconds 10] [--tier free]

It migrates that database, registers an agent (Pro by default: no cap) and serves
the app with gunicorn; the per-minute rates are raised so the limiter counts but
never refuses. With ``--tier free`` it also shows the cap holding under that load:
exactly LITHTRIX_FREE_CALL_LIMIT answers are 200, the rest 402, and the agent's
calls_total ends at the limit.

Measured on 2 vCPUs shared with other work (load average 3 to 6, so the figures
move a lot between runs), PostgreSQL 15 and Redis 7 on loopback, gunicorn
--workers 4, wrk -t4 -c32 -d5s: /v1/authorize 56-212 req/s, /v1/me 151-265 req/s
(the CPU, not the database, is the bottleneck here). Free agent from 0 calls: of
1082, 939 and 374 requests, exactly 300 got 200 and the rest 402; calls_total ended
at 300 every time. In-process (Django test client, no HTTP), /v1/authorize took
5.3 ms and /v1/me 3.9 ms a request, mostly waiting on PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--tier", choices=["pro", "free"], default="pro")
    args = parser.parse_args()
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} must be set (see the docstring)")
    wrk = shutil.which("wrk") or sys.exit("wrk is not installed")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "lithtrix.settings",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "bench-" + "x" * 50),
        "DJANGO_DEBUG": "",
        "EMAIL_URL": os.environ.get("EMAIL_URL", "console:"),
        "LITHTRIX_PRO_RATE": "100000000/m",
        "LITHTRIX_FREE_RATE": "100000000/m",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    python = sys.executable
    subprocess.run(  # noqa: S603
        [python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )
    register = (
        "import uuid;"
        "from accounts.services import agent_register, agent_set_tier;"
        "r = agent_register(agent_name='bench-' + uuid.uuid4().hex[:8], owner_identifier='bench');"
        f"agent_set_tier(agent=r.agent, tier={args.tier!r});"
        "print(r.agent.pk, r.api_key)"
    )
    registered = (
        subprocess.run(  # noqa: S603
            [python, "manage.py", "shell", "-c", register],
            cwd=BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    agent_id, api_key = registered.split()
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [
            python, "-m", "gunicorn", "lithtrix.wsgi", "--workers", str(args.workers),
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        ],
        cwd=BASE_DIR,
        env=env,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        print(
            f"gunicorn workers={args.workers}; wrk -t{args.threads} -c{args.connections}; "
            f"{args.tier} agent"
        )
        # Warm-up (workers import lazily, connections open): unmetered, so a Free
        # agent still starts from 0 calls.
        subprocess.run(  # noqa: S603
            [
                wrk, "-t1", "-c4", "-d1s", "-H", f"Authorization: Bearer {api_key}",
                f"http://127.0.0.1:{port}/v1/me",
            ],
            check=True, capture_output=True,
        )  # fmt: skip
        for path in ("/v1/authorize", "/v1/me"):
            out = subprocess.run(  # noqa: S603
                [
                    wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
                    "--latency", "-H", f"Authorization: Bearer {api_key}",
                    f"http://127.0.0.1:{port}{path}",
                ],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            total = re.search(r"(\d+) requests in", out)
            rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
            p50 = re.search(r"50%\s+(\S+)", out)
            p99 = re.search(r"99%\s+(\S+)", out)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            print(
                f"{path:15} {rps.group(1) if rps else '?':>9} req/s  "
                f"p50 {p50.group(1) if p50 else '?':>8}  p99 {p99.group(1) if p99 else '?':>8}  "
                f"requests {total.group(1) if total else '?'}  "
                f"non-2xx {non2xx.group(1) if non2xx else 0}"
            )
        show = (
            "from accounts.models import Agent;"
            f"print(Agent.objects.get(pk='{agent_id}').calls_total)"
        )
        calls_total = subprocess.run(  # noqa: S603
            [python, "manage.py", "shell", "-c", show],
            cwd=BASE_DIR, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        print(f"calls_total after the run: {calls_total}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
