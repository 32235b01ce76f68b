"""Loopback servers for the multi-process tests, the fuzzer and the benchmark.

gunicorn gets a socket this process already bound (``--bind fd://N``), so the
port is free by construction and known before the server starts; this process
closes its copy once gunicorn has it. Ports are the kernel's choice, or from
LITHTRIX_TEST_PORTS (e.g. ``21200-21299``) when several suites share a machine
that hands each its own range.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import requests.adapters

from testing.assertions import wait_for

BASE_DIR = Path(__file__).resolve().parent.parent
GUNICORN_CONF = BASE_DIR / "deploy" / "gunicorn.conf.py"
# For a test whose point is an exact count of rate-limited calls across processes: a
# loaded machine stalling a worker past the production Redis timeout (0.25 s) would
# have the limiter fail open, as it should, and count nothing; that is another test's.
EXACT_COUNT_TIMEOUT = {"LITHTRIX_CACHE_TIMEOUT_SECONDS": "2"}


class BlackHole:
    """A loopback port that accepts TCP connections and never sends a byte back
    (a Stripe that hangs). Holds every connection until ``close()``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bind_loopback(self.sock)
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        return len(self.held)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()


def bind_loopback(sock: socket.socket) -> None:
    """Bind ``sock`` to a free loopback port: the kernel's pick, or the first free
    one of LITHTRIX_TEST_PORTS (``low-high``) from a random start."""
    ports = os.environ.get("LITHTRIX_TEST_PORTS", "")
    if not ports:
        sock.bind(("127.0.0.1", 0))
        return
    low, _, high = ports.partition("-")
    candidates = list(range(int(low), int(high or low) + 1))
    start = random.randrange(len(candidates))  # noqa: S311 - spreads picks, not a secret
    for port in candidates[start:] + candidates[:start]:
        try:
            sock.bind(("127.0.0.1", port))
            return
        except OSError:
            continue
    raise RuntimeError(f"no free port in LITHTRIX_TEST_PORTS={ports}")


def free_port() -> int:
    """A loopback port nobody listens on right now (for servers that must bind it
    themselves, like nginx; gunicorn gets a bound socket instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        bind_loopback(sock)
        return sock.getsockname()[1]


def redis_answers(port: int, timeout: float) -> bool:
    """Whether a redis-server on loopback ``port`` answers PING within ``timeout``
    seconds (one that is still starting refuses, or answers LOADING)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
        ):
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return True
        time.sleep(0.05)
    return False


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bind_loopback(sock)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path | None = None
    _closables: list = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def children(self) -> list[int]:
        """The server process's children: gunicorn's workers."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for closable in self._closables:
            with contextlib.suppress(Exception):
                closable.close()


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {timeout}s")


def app_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment for a production-mode app process, plus ``overrides``."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SECRET_KEY", "loopback-only-secret-key-" + "x" * 40)
    # Required outside debug; a loopback server's owner e-mail goes to its log.
    env.setdefault("EMAIL_URL", "console:")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(overrides or {})
    return env


def start_gunicorn(
    *,
    workers: int,
    env: Mapping[str, str],
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """gunicorn with deploy/gunicorn.conf.py on a fresh loopback port; waits for /healthz."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(GUNICORN_CONF),
            "--bind",
            f"fd://{sock.fileno()}",
            "--workers",
            str(workers),
            *extra_args,
        ],
        cwd=BASE_DIR,
        env=dict(env),
        pass_fds=(sock.fileno(),),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # gunicorn holds its own copy now. Ours must go: a socket still listening here
    # after gunicorn died would have the kernel accept connections nobody answers,
    # where a dead production host refuses them (nginx then fails over at once).
    sock.close()
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    if log is not subprocess.DEVNULL:
        server._closables.append(log)
    try:
        wait_until_up(f"{server.url}/healthz", process)
        # The first worker answers while the master may still be forking the others
        # (gunicorn sleeps up to 0.1 s between forks): a caller counting or killing
        # workers must see them all.
        forked = wait_for(
            lambda: process.poll() is not None or len(server.children()) >= workers, 10
        )
        if not forked or process.poll() is not None:
            raise RuntimeError(f"gunicorn did not start {workers} workers: {server.children()}")
    except Exception:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_gunicorn(**kwargs) -> Iterator[Server]:
    server = start_gunicorn(**kwargs)
    try:
        yield server
    finally:
        server.stop()


def start_runserver(*, env: Mapping[str, str], log_path: Path | None = None) -> Server:
    """Django's development server (``runserver --noreload``) on a loopback port;
    waits for /healthz."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=BASE_DIR,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    if log is not subprocess.DEVNULL:
        server._closables.append(log)
    try:
        wait_until_up(f"{server.url}/healthz", process, timeout=60)
    except Exception:
        server.stop()
        raise
    return server


def burst(
    url: str, headers: Mapping[str, str], count: int, *, concurrency: int = 32
) -> list[requests.Response]:
    """``count`` concurrent GETs, each on its own connection (so several workers or
    processes share them)."""

    def call(_n: int) -> requests.Response:
        return requests.get(url, headers=dict(headers), timeout=60)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(call, range(count)))


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """The URL of a Django database (e.g. the test database) for a server subprocess."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    auth = settings_dict["USER"] + (
        f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else ""
    )
    host = settings_dict["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"


def fresh_database_url(database_url: str | None, suffix: str, tmp_dir: Path) -> str:
    """A new, empty database for a throwaway server: ``<database>_<suffix>`` on the
    PostgreSQL server of ``database_url`` (dropped and created again), else a SQLite
    file in ``tmp_dir``."""
    if not database_url or not database_url.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{tmp_dir / (suffix + '.sqlite3')}"
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(database_url)
    name = f"{parts.path.lstrip('/') or 'lithtrix'}_{suffix}"
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def manage(*args: str, env: Mapping[str, str]) -> None:
    """``python manage.py ARGS`` in a subprocess (e.g. migrate on the server's database)."""
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=dict(env), check=True)


def serve_check(overrides: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """make serve's first step (deploy/serve_check.py) on a production-mode environment
    with ``overrides``: everything it needs set, on a SQLite file it never opens."""
    env = app_environment(
        {
            "DATABASE_URL": "sqlite:///unused.sqlite3",
            "DJANGO_SECRET_KEY": "x" * 50,
            "LITHTRIX_SINGLE_PROCESS": "on",
            "EMAIL_URL": "console:",
            **overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "deploy/serve_check.py"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class _FromAddress(requests.adapters.HTTPAdapter):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    """A requests session whose connections leave from ``address`` (any of
    127.0.0.0/8 on Linux): another client, as a server on loopback sees it."""
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session
