"""testing/servers.py: the loopback gunicorn behaves as a production one when it dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.parse

import pytest

from lithtrix.tests.test_multiprocess_limits import server_env
from testing.servers import start_gunicorn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_postgres,
    pytest.mark.django_db(transaction=True),
]


def test_a_killed_gunicorn_refuses_connections(redis_url, tmp_path):
    """Once gunicorn's master and workers are SIGKILLed its port refuses connections,
    as a production host's does: no other process (the test's) keeps the listening
    socket open, where the kernel would accept connections nobody ever answers."""
    server = start_gunicorn(workers=2, env=server_env(redis_url), log_path=tmp_path / "g.log")
    try:
        for pid in [server.process.pid, *server.children()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        port = urllib.parse.urlsplit(server.url).port
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except ConnectionRefusedError:
                break
            # A worker not yet gone still holds the socket.
            assert time.monotonic() < deadline, "the dead host's port still accepts"
            time.sleep(0.1)
    finally:
        server.stop()
