"""A throwaway PostgreSQL primary and its streaming replica on loopback.

initdb a primary, ``pg_basebackup -R`` a replica from it (it then streams from the
primary and refuses writes), both on free ports, under one temporary directory.
Never the machine's shared PostgreSQL. Binaries from /usr/lib/postgresql/*/bin;
run as postgres when we are root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from testing.servers import free_port

DATABASE = "lithtrix"


class PostgresMissing(RuntimeError):
    pass


def postgres_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_basebackup").exists():
            return candidate
    found = shutil.which("initdb")
    if found and shutil.which("pg_basebackup"):
        return Path(found).parent
    raise PostgresMissing("PostgreSQL's initdb and pg_basebackup are not installed")


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class ReplicatedPostgres:
    directory: Path
    bindir: Path
    primary_port: int
    replica_port: int

    @property
    def primary_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.primary_port}/{DATABASE}"

    @property
    def replica_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.replica_port}/{DATABASE}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bindir / tool), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self, data: str, port: int) -> None:
        options = f"-p {port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / f"{data}.log")
        self._run(
            "pg_ctl", "-D", str(self.directory / data), "-l", log, "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip

    def stop(self, data: str, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.directory / data), "-m", mode, "-w", "stop")

    def start_replica(self) -> None:
        self.start("replica", self.replica_port)

    def stop_replica(self) -> None:
        self.stop("replica")

    def query(self, url: str, sql: str, *params) -> list[tuple]:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        (target,) = self.query(self.primary_url, "SELECT pg_current_wal_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query(
                self.replica_url, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target
            )
            if rows[0][0]:
                return
            time.sleep(0.05)
        raise TimeoutError("the replica did not catch up")


@contextlib.contextmanager
def replicated_postgres() -> Iterator[ReplicatedPostgres]:
    """A running primary (with an empty database "lithtrix") and its replica."""
    bindir = postgres_bindir()
    directory = Path(tempfile.mkdtemp(prefix="lithtrix-replica-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    pg = ReplicatedPostgres(directory, bindir, free_port(), free_port())
    started: list[str] = []
    try:
        pg._run("initdb", "-D", str(directory / "primary"), "-A", "trust", "-U", "postgres")
        pg.start("primary", pg.primary_port)
        started.append("primary")
        pg.query(pg.primary_url.replace(f"/{DATABASE}", "/postgres"), f"CREATE DATABASE {DATABASE}")
        pg._run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(pg.primary_port), "-U", "postgres"),
            *("-D", str(directory / "replica"), "-R", "-X", "stream", "-c", "fast"),
        )
        pg.start_replica()
        started.append("replica")
        yield pg
    finally:
        for data in reversed(started):
            with contextlib.suppress(subprocess.CalledProcessError):
                pg.stop(data, "immediate")
        shutil.rmtree(directory, ignore_errors=True)


def create_schema(url: str) -> None:
    """The project's tables on the database at ``url``, as the drills create theirs
    (drills/settings.py: the project's migrations, dj-stripe's tables from its models)."""
    from testing.servers import BASE_DIR, app_environment

    env = app_environment(
        {
            "DATABASE_URL": url,
            "REDIS_URL": "redis://127.0.0.1:1/0",  # not used by migrate
            "DJANGO_SETTINGS_MODULE": "drills.settings",
        }
    )
    env.pop("DATABASE_REPLICA_URL", None)
    for args in (["migrate", "-v0"], ["migrate", "--run-syncdb", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)
