"""The metering statement's ceiling on one PostgreSQL primary (pgbench, custom script).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix_perf \
        .venv/bin/python bench/pgbench_meter.py [--clients 8 32 64] [--seconds 10] [--throwaway]

Runs the real statement of a metered call (billing.metering.services, the variant
that re-checks the key: what every hinted /v1/authorize sends) with pgbench in
prepared mode, each transaction for a random one of ``--agents`` agents, at each
client count, and prints transactions per second and latency. The schema comes
from a migrated copy of the app's database (bench/database.py); the data is
seeded with SQL. ``--throwaway`` runs on a PostgreSQL of its own (initdb on a free
loopback port, same binaries and defaults, max_connections 150): 64 clients would
otherwise take most of a shared server's connections. ``--synchronous-commit off``
measures the optional non-durable metering (LITHTRIX_METER_SYNCHRONOUS_COMMIT).
The database it measures on is <name>_pgbench, dropped and created again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.database import migrated_database_url  # noqa: E402
from testing.servers import app_environment, free_port  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _found(pattern: str, text: str) -> str:
    """The first group of ``pattern`` in the tool's output (which must have it)."""
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"{pattern!r} not in the output:\n{text}")
    return match.group(1)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server of our own on a free loopback port; its admin URL."""
    directory = Path(tempfile.mkdtemp(prefix="lithtrix-pgbench-"))
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    shutil.chown(directory, "postgres")
    initdb: list[str | Path] = [
        PG_BIN / "initdb",
        "-D",
        directory / "data",
        "-A",
        "trust",
        "-U",
        "postgres",
    ]
    subprocess.run(  # noqa: S603
        [*as_postgres, *initdb],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=150"
    pg_ctl: list[str | Path] = [*as_postgres, PG_BIN / "pg_ctl", "-D", directory / "data"]
    subprocess.run(  # noqa: S603
        [*pg_ctl, "-l", directory / "log", "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=False, capture_output=True)  # noqa: S603
        shutil.rmtree(directory, ignore_errors=True)


def statement_and_tables(env: dict[str, str]) -> tuple[str, list[str]]:
    """The hinted metering statement as a pgbench script, and the tables it touches."""
    os.environ.update(env)
    import django

    django.setup()
    from accounts.models import Agent
    from billing.metering.services import _postgresql_sql, near_limit_mark
    from billing.models import DailyUsage
    from events.models import Event
    from keys.models import ApiKey

    sql = _postgresql_sql(with_key=True)
    pick = "(SELECT {} FROM bench_agents WHERE n = :n)"
    for name, value in {
        "now": "now()",
        "today": "current_date",
        "agent_id": pick.format("agent_id"),
        "hashed_key": pick.format("hashed_key"),
        "tier": "'free'",
        "free": "'free'",
        "free_limit": "1000000000",
        "near_mark": str(near_limit_mark(1000000000)),
        "near_limit": f"'{Event.Type.USAGE_NEAR_LIMIT.value}'",
        "limit_reached": f"'{Event.Type.USAGE_LIMIT_REACHED.value}'",
    }.items():
        sql = sql.replace(f"%({name})s", value)
    if "%(" in sql:
        raise RuntimeError(f"a parameter the script does not fill: {sql}")
    # DailyUsage last: its partitions are dumped by its name.
    tables = [m._meta.db_table for m in (Agent, ApiKey, Event, DailyUsage)]
    return " ".join(sql.split()) + ";\n", tables


def psql(url: str, sql: str) -> None:
    """Each statement on its own (autocommit: VACUUM cannot run in a transaction)."""
    subprocess.run(  # noqa: S603
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", url],  # noqa: S607
        input=sql,
        check=True,
        capture_output=True,
        text=True,
    )


def prepare_database(admin_url: str, schema_url: str, tables: list[str], agents: int) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    url = urllib.parse.urlunsplit(parts._replace(path="/lithtrix_perf_pgbench"))
    psql(admin_url, "DROP DATABASE IF EXISTS lithtrix_perf_pgbench WITH (FORCE)")
    psql(admin_url, "CREATE DATABASE lithtrix_perf_pgbench")
    dump = subprocess.run(  # noqa: S603
        [  # noqa: S607
            "pg_dump",
            "--schema-only",
            "--no-owner",
            *[f"--table={t}" for t in tables],
            # DailyUsage's monthly partitions (billing.metering.partitions), where its rows live.
            f"--table={tables[-1]}_*",
            schema_url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    psql(url, dump)
    agent, key, *_written = tables
    psql(
        url,
        f"""
        CREATE TABLE bench_agents (n int PRIMARY KEY, agent_id uuid, hashed_key varchar(64));
        INSERT INTO bench_agents
             SELECT n, gen_random_uuid(), encode(sha256(('key' || n)::bytea), 'hex')
               FROM generate_series(1, {agents}) n;
        INSERT INTO {agent} (id, agent_name, owner_identifier, tier, calls_total,
                             created_at, updated_at)
             SELECT agent_id, 'bench-' || n, 'bench@example.com', 'free', 0, now(), now()
               FROM bench_agents;
        INSERT INTO {key} (agent_id, prefix, hashed_key, created_at)
             SELECT agent_id, 'ltx_' || left(hashed_key, 8), hashed_key, now()
               FROM bench_agents;
        VACUUM ANALYZE;
        CHECKPOINT;
        """,  # noqa: S608 - table names from the models, a number
    )
    return url


def run_pgbench(url: str, script: Path, clients: int, seconds: int, options: str) -> dict:
    env = dict(os.environ, PGOPTIONS=options) if options else dict(os.environ)
    output = subprocess.run(  # noqa: S603
        [  # noqa: S607
            "pgbench", "-n", "-M", "prepared", "-f", str(script), "-c", str(clients),
            "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(seconds), "-r",
            "-P", str(seconds), url,
        ],
        check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    tps = float(_found(r"tps = ([\d.]+)", output))
    latency = float(_found(r"latency average = ([\d.]+) ms", output))
    failed = re.search(r"number of failed transactions: (\d+)", output)
    return {"tps": tps, "latency_ms": latency, "failed": int(failed.group(1)) if failed else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--throwaway", action="store_true", help="on a PostgreSQL of its own")
    parser.add_argument("--synchronous-commit", default="on", choices=["on", "off"])
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("needs DATABASE_URL=postgres://... (the schema is migrated there)")
    env = app_environment(
        {"DJANGO_SETTINGS_MODULE": "lithtrix.settings", "LITHTRIX_SINGLE_PROCESS": "on"}
    )
    schema_url = migrated_database_url(database_url, "pgbench_schema", env)
    env["DATABASE_URL"] = schema_url
    statement, tables = statement_and_tables(env)
    options = f"-c synchronous_commit={args.synchronous_commit}"

    with contextlib.ExitStack() as stack:
        if args.throwaway:
            admin_url = stack.enter_context(throwaway_postgres())
        else:
            parts = urllib.parse.urlsplit(database_url)
            admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
        url = prepare_database(admin_url, schema_url, tables, args.agents)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        script = tmp / "meter.sql"
        script.write_text(f"\\set n random(1, {args.agents})\n{statement}")
        where = "a throwaway PostgreSQL 15" if args.throwaway else "the shared PostgreSQL"
        print(
            f"metering statement, pgbench -M prepared -T {args.seconds}, {args.agents:,} agents, "
            f"{where}, synchronous_commit={args.synchronous_commit}, {os.cpu_count()} CPU cores, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'clients':>7} {'calls/s':>9} {'latency ms':>11} {'failed':>7}")
        for clients in args.clients:
            r = run_pgbench(url, script, clients, args.seconds, options)
            print(f"{clients:>7} {r['tps']:>9.0f} {r['latency_ms']:>11.2f} {r['failed']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
