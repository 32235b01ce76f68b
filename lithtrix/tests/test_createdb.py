"""`make serve`'s first step, deploy/createdb.py: DATABASE_URL's database exists afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from testing.servers import BASE_DIR

# Servers or Python in subprocesses, or a browser: seconds each, not milliseconds.
pytestmark = pytest.mark.slow


def _database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


@pytest.mark.requires_postgres
def test_createdb_creates_a_missing_database_once() -> None:
    if os.environ.get("DATABASE_POOLING") == "pgbouncer":
        # CREATE DATABASE is PostgreSQL's own business (make serve runs createdb.py
        # against it); CI's direct pass on PostgreSQL runs this test.
        pytest.skip("creates databases on PostgreSQL directly, not through PgBouncer")
    params = connection.settings_dict
    name = f"{params['NAME']}_createdb"
    netloc = f"{params['USER'] or ''}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}"
    if params.get("PASSWORD"):
        netloc = f"{params['USER']}:{params['PASSWORD']}@" + netloc.split("@", 1)[1]
    admin_url = f"postgres://{netloc}/postgres"
    url = f"postgres://{netloc}/{urllib.parse.quote(name)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    try:
        for _ in range(2):  # missing, then present: both succeed
            result = _createdb(url)
            assert result.returncode == 0, result.stderr
            assert _database_exists(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_createdb_leaves_sqlite_alone(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    result = _createdb(url)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "db.sqlite3").exists()


def _createdb(url: str) -> subprocess.CompletedProcess[str]:
    """``deploy/createdb.py`` as make serve runs it, with only DATABASE_URL set."""
    return subprocess.run(
        [sys.executable, "deploy/createdb.py"],
        cwd=BASE_DIR,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
