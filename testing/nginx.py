"""A real nginx on loopback: deploy/nginx/metering.conf (the gateway tests) or
deploy/nginx/lithtrix.conf (the production front)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testing.servers import BASE_DIR, free_port

CONFIG = BASE_DIR / "deploy" / "nginx" / "metering.conf"
FRONT_CONFIG = BASE_DIR / "deploy" / "nginx" / "lithtrix.conf"


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed: .ci/run installs it.")
        pytest.skip("needs nginx")
    return path


def start_nginx(
    tmp_path: Path, lithtrix_url: str, product_port: int, *, workers: int = 1
) -> tuple[subprocess.Popen, str]:
    """nginx on a free port with the example config: /v1/authorize at lithtrix_url,
    the product API on product_port. Returns the process and the gateway's URL."""
    port = free_port()
    include = (
        CONFIG.read_text()
        .replace("${LITHTRIX_ADDR}", lithtrix_url.removeprefix("http://"))
        .replace("${PRODUCT_ADDR}", f"127.0.0.1:{product_port}")
        .replace("${LISTEN}", f"127.0.0.1:{port}")
    )
    return run_nginx(tmp_path, "metering.conf", include, port, workers=workers)


def start_front(
    tmp_path: Path, upstream_url: str, *, workers: int = 1, replace: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """nginx on a free port with the production front (deploy/nginx/lithtrix.conf) in
    front of the gunicorn at upstream_url. ``replace`` edits the config text further
    (e.g. a lower rate for a test). Returns the process and the front's URL."""
    port = free_port()
    include = (
        FRONT_CONFIG.read_text()
        .replace("${LITHTRIX_UPSTREAM}", upstream_url.removeprefix("http://"))
        .replace("${LISTEN}", f"127.0.0.1:{port}")
        .replace("${SERVER_NAME}", "localhost")
    )
    for old, new in (replace or {}).items():
        assert old in include, old
        include = include.replace(old, new)
    return run_nginx(tmp_path, "lithtrix.conf", include, port, workers=workers)


def stop_nginx(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_nginx(
    tmp_path: Path, name: str, include: str, port: int, *, workers: int = 1
) -> tuple[subprocess.Popen, str]:
    """nginx (daemon off, files under tmp_path) with ``include`` in its http block;
    waits until ``port`` accepts connections."""
    (tmp_path / name).write_text(include)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"""
daemon off;
worker_processes {workers};
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}
    include {tmp_path}/{name};
}}
"""
    )
    process = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log = tmp_path / "error.log"
                pytest.fail(f"nginx did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)
