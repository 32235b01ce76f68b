# ruff: noqa: S603 - the drills start their own servers from fixed arguments
"""Fault drills: the production shape (gunicorn with deploy/gunicorn.conf.py, nginx
with deploy/nginx/lithtrix.conf) on dependencies of its own that the drills break
on purpose — a throwaway PostgreSQL cluster (initdb into a temp dir, free port), a
throwaway Redis (free port, no persistence) and a black-hole TCP listener standing
for Stripe (accepts, never answers). Never the machine's shared PostgreSQL or Redis.

Each drill adds one row to the table printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from testing.nginx import start_front, stop_nginx
from testing.servers import (
    BASE_DIR,
    BlackHole,
    Server,
    app_environment,
    free_port,
    redis_answers,
    start_gunicorn,
)

ROWS: list[dict[str, str]] = []
COLUMNS = ("drill", "broken", "clients saw", "unaffected p50/p99", "recovery", "calls_total")


def pytest_terminal_summary(terminalreporter) -> None:
    if not ROWS:
        return
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in ROWS)) for c in COLUMNS}
    terminalreporter.section("fault drills")
    line = "  ".join(c.ljust(widths[c]) for c in COLUMNS)
    terminalreporter.write_line(line)
    terminalreporter.write_line("  ".join("-" * widths[c] for c in COLUMNS))
    for row in ROWS:
        terminalreporter.write_line("  ".join(row.get(c, "").ljust(widths[c]) for c in COLUMNS))


def _binary(name: str, *candidates: str) -> str:
    for path in (shutil.which(name), *candidates):
        if path and os.path.exists(path):
            return path
    pytest.fail(f"{name} is not installed (.ci/run installs it)")


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: CI runs as root, so run it as postgres."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


# --- PostgreSQL -------------------------------------------------------------------


@dataclass
class Postgres:
    directory: Path
    port: int
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/lithtrix"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data"), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "log")
        self._pg_ctl("-l", log, "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()


def _postgres_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pytest.fail("PostgreSQL's initdb is not installed")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    directory = Path(tempfile.mkdtemp(prefix="lithtrix-drills-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    pg = Postgres(directory, free_port(), _postgres_bindir())
    subprocess.run(
        _as_postgres(
            [
                str(pg.bindir / "initdb"),
                *("-D", str(directory / "data"), "-A", "trust", "-U", "postgres"),
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pg.start()
    try:
        with psycopg.connect(pg.url.replace("/lithtrix", "/postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE lithtrix")
        env = app_environment(
            {
                "DATABASE_URL": pg.url,
                "REDIS_URL": "redis://127.0.0.1:1/0",  # not used by migrate
                "DJANGO_SETTINGS_MODULE": "drills.settings",
            }
        )
        # The project's migrations, then dj-stripe's tables straight from its models.
        for args in (["migrate", "-v0"], ["migrate", "--run-syncdb", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


# --- Redis --------------------------------------------------------------------------


@dataclass
class Redis:
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                _binary("redis-server", "/usr/bin/redis-server"),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not redis_answers(self.port, 10):
            pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None, "start() first"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None, "start() first"
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="session")
def redis() -> Iterator[Redis]:
    store = Redis(free_port())
    store.start()
    try:
        yield store
    finally:
        store.stop()


# --- Stripe that never answers ---------------------------------------------------


@pytest.fixture(scope="session")
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


# --- The service under drill -------------------------------------------------------


@dataclass
class Service:
    app: Server
    postgres: Postgres
    redis: Redis
    front_url: str | None = None
    front_dir: Path | None = None
    agents: list[tuple[str, str]] = field(default_factory=list)

    def register(self, name: str) -> tuple[str, str]:
        """A new Free agent: (agent_id, api_key)."""
        response = requests.post(
            f"{self.app.url}/v1/register",
            json={"agent_name": f"{name}-{uuid.uuid4().hex[:8]}", "owner_identifier": "d@x.io"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return body["agent_id"], body["api_key"]

    def calls_total(self, agent_id: str) -> int:
        rows = self.postgres.query("SELECT calls_total FROM accounts_agent WHERE id = %s", agent_id)
        return rows[0][0]

    def worker_pids(self) -> list[int]:
        return self.app.children()

    def front_log(self) -> str:
        """nginx's error log (warnings and up)."""
        log = self.front_dir / "error.log" if self.front_dir else None
        return log.read_text() if log and log.exists() else ""

    def log_lines(self, needle: str) -> int:
        return sum(1 for line in self.app.log().splitlines() if needle in line)


WORKERS = 4


def drill_environment(
    *, database_url: str, redis_url: str, stripe_port: int, **overrides: str
) -> dict[str, str]:
    """The app's environment on a drill's throwaway PostgreSQL and Redis, Stripe at the
    black hole, limits out of the way, quiet access log; ``overrides`` on top."""
    return app_environment(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "STRIPE_SECRET_KEY": "sk_test_drills",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_drills",
            "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
            "LITHTRIX_FREE_CALL_LIMIT": "1000000",
            "LITHTRIX_FREE_RATE": "1000000/m",
            "LITHTRIX_ACCESS_LOG_LEVEL": "WARNING",
            **overrides,
        }
    )


@pytest.fixture
def service(postgres, redis, black_hole, tmp_path) -> Iterator[Service]:
    """gunicorn (4 workers, deploy/gunicorn.conf.py) on the throwaway dependencies,
    Stripe at the black hole; nginx in front (service.front_url)."""
    env = drill_environment(
        database_url=postgres.url,
        redis_url=redis.url,
        stripe_port=black_hole.port,
        LITHTRIX_REGISTER_RATE="100000/m",
        LITHTRIX_TRUSTED_PROXIES="127.0.0.1",
    )
    app = start_gunicorn(workers=WORKERS, env=env, log_path=tmp_path / "gunicorn.log")
    (tmp_path / "nginx").mkdir()
    nginx, front_url = start_front(tmp_path / "nginx", app.url, workers=1)
    try:
        yield Service(app, postgres, redis, front_url, tmp_path / "nginx")
    finally:
        stop_nginx(nginx)
        app.stop()
