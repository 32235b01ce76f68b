"""The Makefile's set-up targets a new user meets: serve's checks, reset, superuser."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from pathlib import Path

from testing.servers import BASE_DIR, free_port


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`make -s ARGS` in a fresh terminal's environment plus ``env``."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run(
        ["make", "-s", *args],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_serve_names_every_missing_setting_at_once_before_touching_anything(
    tmp_path: Path,
) -> None:
    done = make("serve", f"PORT={free_port()}")

    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "KeyError" not in done.stderr
    message = done.stderr.split("make serve: cannot start", 1)[1]
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL"):
        assert f"{name} is not set" in message


def test_serve_reports_a_refused_value_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"

    done = make(
        "serve",
        f"PORT={free_port()}",
        DATABASE_URL=f"sqlite:///{database}",
        DJANGO_SECRET_KEY="x" * 50,
        REDIS_URL="redis://127.0.0.1:1/0",
        EMAIL_URL="console:",
        DATABASE_POOLING="bogus",
    )

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "DATABASE_POOLING must be empty or 'pgbouncer'." in done.stderr
    assert not database.exists()


def test_superuser_twice_succeeds_and_changes_nothing(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
        "DJANGO_SUPERUSER_PASSWORD": "choose-a-long-passphrase",
    }

    first = make("superuser", **env)
    second = make("superuser", **{**env, "DJANGO_SUPERUSER_PASSWORD": "another-passphrase"})

    assert first.returncode == 0, first.stderr
    assert "Superuser created successfully." in first.stdout
    assert second.returncode == 0, second.stderr
    assert "Superuser admin exists already; nothing changed." in second.stdout
    assert "Log in at http://127.0.0.1:8000/admin/" in second.stdout


def test_reset_refuses_a_database_url_it_does_not_own() -> None:
    done = make("reset", f"PORT={free_port()}", DATABASE_URL="postgres://db.internal/lithtrix")

    assert done.returncode != 0
    assert "only make run's own db.sqlite3 is reset" in done.stdout


def test_reset_refuses_while_a_server_answers_on_port() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = make("reset", f"PORT={server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()

    assert done.returncode != 0
    assert "stop make run first" in done.stdout
