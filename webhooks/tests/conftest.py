"""Real receivers on loopback: one answering what each test scripts, one dripping."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testing.servers import bind_loopback


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    # Status codes to answer, in order; the last one repeats.
    statuses: list[int] = field(default_factory=lambda: [200])
    answer_body: bytes = b"ok"
    extra_headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = True
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.received.append(
                Received(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
            )
            index = min(len(state.received), len(state.statuses)) - 1
            self.send_response(state.statuses[index])
            for name, value in state.extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.answer_body)))
            self.end_headers()
            self.wfile.write(state.answer_body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?agent=1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def dripping(settings) -> Iterator[Callable[[bytes, bytes], int]]:
    """A loopback port whose every connection gets ``prefix``, then ``unit`` again and
    again DRIP_PAUSE seconds apart, never quiet long enough to trip a socket timeout.
    Each connection is closed after DRIP_SECONDS (a client without a deadline then gets
    its answer late, rather than a test that hangs)."""
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = True
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    stop = threading.Event()
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def drip(conn: socket.socket, prefix: bytes, unit: bytes) -> None:
        until = time.monotonic() + DRIP_SECONDS
        with contextlib.suppress(OSError), conn:
            conn.sendall(prefix)
            while not stop.is_set() and time.monotonic() < until:
                conn.sendall(unit)
                stop.wait(DRIP_PAUSE)

    def accept(listener: socket.socket, prefix: bytes, unit: bytes) -> None:
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=drip, args=(conn, prefix, unit), daemon=True)
            threads.append(thread)
            thread.start()

    def start(prefix: bytes, unit: bytes) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bind_loopback(listener)
        listener.listen(8)
        listener.settimeout(0.1)
        listeners.append(listener)
        thread = threading.Thread(target=accept, args=(listener, prefix, unit), daemon=True)
        threads.append(thread)
        thread.start()
        return listener.getsockname()[1]

    yield start
    stop.set()
    for thread in threads:
        thread.join()
    for listener in listeners:
        listener.close()


DRIP_PAUSE = 0.05
DRIP_SECONDS = 5.0


@pytest.fixture
def hanging_resolver(monkeypatch):
    """socket.getaddrinfo that answers no lookup until the test ends (a resolver that
    never answers); the names asked are in the list it yields."""
    released = threading.Event()
    asked = []

    def hang(host, *args, **kwargs):
        asked.append(host)
        released.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    yield asked
    released.set()
