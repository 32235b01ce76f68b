"""One HTTP POST of a signed delivery to an agent's URL, through the SSRF guard.

urllib3 connects to the checked address while TLS verifies the URL's host name
(server_hostname / assert_hostname) and the Host header names it too. No redirects,
no retries here (the job system retries), at most MAX_ANSWER_BYTES of the answer read,
and the whole exchange ends within TIMEOUT_SECONDS (a deadline, not only a timeout
per socket operation).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

from webhooks.addresses import AddressRefused, resolve

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    error: str


class _Deadline:
    """Shuts the attempt's connection down once its time is up, whatever it is doing.

    urllib3's timeouts bound each socket operation: a receiver that sends its TLS
    handshake, status line, headers or answer a byte at a time never trips them, and
    would hold the job (and its worker) until the job system kills it unrecorded.
    """

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._ended = False
        self.exceeded = False
        self._timer = threading.Timer(seconds, self._exceed)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor: TLS takes the original socket object over (detaching
        # it), and a shutdown through the duplicate still ends the same connection.
        duplicate = sock.dup()
        with self._lock:
            self._sockets.append(duplicate)
            if self.exceeded:
                _shut(duplicate)

    def _exceed(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.exceeded = True
            for sock in self._sockets:
                _shut(sock)

    def end(self) -> bool:
        """Stops watching; whether the deadline came first."""
        self._timer.cancel()
        with self._lock:
            self._ended = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            return self.exceeded


def _shut(sock: socket.socket) -> None:
    # Wakes a read or write blocked on the connection in the attempt's thread.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# urllib3 creates the connection's socket in _new_conn(), the one place it exists
# before TLS is set up on it: the deadline watches it from there.
class _HTTPConnection(urllib3.connection.HTTPConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._deadline.watch(sock)
        return sock


# The same watch before urllib3's TLS (its HTTPSConnection is an HTTPConnection).
class _HTTPSConnection(_HTTPConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Outcome:
    started = time.monotonic()
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    try:
        destination = resolve(
            parts.hostname or "",
            port,
            allow_private=settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE,
            timeout=TIMEOUT_SECONDS,
        )
    except AddressRefused as error:
        return Outcome(succeeded=False, status_code=None, error=str(error))
    # The name in ASCII (IDNA for an internationalized one) for TLS and the Host header.
    host = destination.host
    # The lookup's time counts: the whole attempt ends within TIMEOUT_SECONDS.
    left = max(0.05, TIMEOUT_SECONDS - (time.monotonic() - started))
    # urllib3's own timeout a little later than the deadline, so the deadline ends a
    # silent receiver's attempt, and it is recorded as such, however loaded the host.
    timeout = urllib3.Timeout(total=left + 0.5)
    deadline = _Deadline(left)
    pool: urllib3.HTTPConnectionPool
    if https:
        pool = _HTTPSConnectionPool(
            destination.address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            deadline=deadline,
        )
    else:
        pool = _HTTPConnectionPool(
            destination.address, port, timeout=timeout, retries=False, maxsize=1, deadline=deadline
        )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{parts.port}"
    error_name = ""
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                target,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                response.read(MAX_ANSWER_BYTES, decode_content=False)
            finally:
                response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        error_name = type(error).__name__
    finally:
        exceeded = deadline.end()
    # Whatever the shutdown made of the exchange (an error, or an answer cut short).
    if exceeded:
        return Outcome(succeeded=False, status_code=None, error="deadline exceeded")
    if error_name:
        return Outcome(succeeded=False, status_code=None, error=error_name)
    status = response.status
    return Outcome(
        succeeded=200 <= status < 300,
        status_code=status,
        error="" if 200 <= status < 300 else f"HTTP {status}",
    )
