"""Small load tools for the front's tests and the fault drills: slow clients,
timed calls and their percentiles."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Calls:
    """What a client saw: status counts (``"timeout"``/``"error"`` for no answer,
    ``"truncated"`` for a status line and headers whose body never arrived in full)
    and each answer's latency in seconds."""

    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    bodies: list[tuple[int, bytes]] = field(default_factory=list)
    # What the client library raised for the calls that got no answer (the first 20).
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int | str, seconds: float, body: bytes = b"") -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(seconds)
            if isinstance(status, int) and status >= 400 and len(self.bodies) < 50:
                self.bodies.append((status, body))

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def summary(self) -> str:
        counts = " ".join(f"{k}x{v}" for k, v in sorted(self.statuses.items(), key=str))
        return f"{counts} p50={self.p(50) * 1000:.0f}ms p99={self.p(99) * 1000:.0f}ms"


def timed_call(
    calls: Calls,
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float = 10.0,
    **kwargs,
) -> requests.Response | None:
    started = time.perf_counter()
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        calls.record("timeout", time.perf_counter() - started)
        return None
    except requests.exceptions.ChunkedEncodingError as exc:
        # The headers came, then the connection closed before the body was complete
        # (urllib3's "Response ended prematurely"): the server or proxy cut the answer.
        calls.record("truncated", time.perf_counter() - started)
        with calls.lock:
            if len(calls.errors) < 20:
                calls.errors.append(repr(exc))
        return None
    except requests.RequestException as exc:
        calls.record("error", time.perf_counter() - started)
        with calls.lock:
            if len(calls.errors) < 20:
                calls.errors.append(repr(exc))
        return None
    calls.record(response.status_code, time.perf_counter() - started, response.content)
    return response


@dataclass
class Slowloris:
    """Connections that send their request slowly: each sends its headers (half of
    them one header line at a time), announces a body and then sends one byte of it
    every ``interval`` seconds, never finishing."""

    url: str
    connections: int = 50
    interval: float = 2.0
    path: str = "/v1/keys/rotate"
    sockets: list[socket.socket] = field(default_factory=list)
    closed_by_server: int = 0

    def _open(self, n: int) -> socket.socket:
        parts = urllib.parse.urlsplit(self.url)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {parts.hostname}\r\n"
            "Content-Type: application/json\r\nContent-Length: 4000\r\n"
        )
        if n % 2:
            # Header dribbler: the request line and one header; the rest later.
            sock.sendall(head.split("Content-Type")[0].encode())
        else:
            # Body dribbler: all headers, then the body a byte at a time.
            sock.sendall((head + "\r\n").encode())
        return sock

    def _dribble(self, stop: threading.Event) -> None:
        step = 0
        while not stop.wait(self.interval):
            step += 1
            for n, sock in enumerate(list(self.sockets)):
                try:
                    if n % 2 and step == 1:
                        sock.sendall(b"X-Slow: 1\r\n")
                    elif n % 2:
                        sock.sendall(b"X-Slow-%d: 1\r\n" % step)
                    else:
                        sock.sendall(b" ")
                except OSError:
                    self.closed_by_server += 1
                    self.sockets.remove(sock)

    def still_open(self) -> int:
        """How many connections the server has not closed (a peek: no data read)."""
        open_count = 0
        for sock in self.sockets:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                # Nothing to read: no answer, no end of stream. Still waiting on us.
                open_count += 1
        return open_count

    @contextlib.contextmanager
    def running(self) -> Iterator[Slowloris]:
        stop = threading.Event()
        thread = threading.Thread(target=self._dribble, args=(stop,), daemon=True)
        try:
            for n in range(self.connections):
                self.sockets.append(self._open(n))
            thread.start()
            yield self
        finally:
            stop.set()
            if thread.is_alive():
                thread.join(timeout=10)
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self.sockets.clear()
