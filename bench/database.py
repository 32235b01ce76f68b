"""A fresh, migrated PostgreSQL database for bench runs, in a second instead of minutes.

Migrating from nothing (dj-stripe's migrations) takes minutes of CPU. The first
run migrates a template database named after a hash of every migration file and
the installed packages' versions that ship migrations; later runs with the same
migrations copy it (``CREATE DATABASE ... TEMPLATE``), which takes about a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Installed apps with migrations of their own: a new version means a new template.
_PACKAGES_WITH_MIGRATIONS = ("Django", "dj-stripe", "djangorestframework")


def migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(BASE_DIR.glob("*/**/migrations/*.py")):
        if ".venv" in path.parts:
            continue
        digest.update(str(path.relative_to(BASE_DIR)).encode())
        digest.update(path.read_bytes())
    for package in _PACKAGES_WITH_MIGRATIONS:
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:12]


def migrated_template(database_url: str, env: Mapping[str, str]) -> str:
    """The name of the migrated template on ``database_url``'s server (migrated now
    when missing)."""
    import psycopg
    from psycopg import sql

    from testing.servers import manage

    parts = urllib.parse.urlsplit(database_url)
    base = parts.path.lstrip("/") or "lithtrix"
    template = f"{base}_tpl_{migrations_digest()}"
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone()
    if not exists:
        building = f"{template}_building"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
        building_url = urllib.parse.urlunsplit(parts._replace(path=f"/{building}"))
        manage("migrate", "--noinput", "-v0", env={**env, "DATABASE_URL": building_url})
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(building), sql.Identifier(template)
                )
            )
    return template


def migrated_database_url(database_url: str, suffix: str, env: Mapping[str, str]) -> str:
    """``<database>_<suffix>``, dropped and created again from a migrated template."""
    import psycopg
    from psycopg import sql

    template = migrated_template(database_url, env)
    parts = urllib.parse.urlsplit(database_url)
    name = f"{parts.path.lstrip('/') or 'lithtrix'}_{suffix}"
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def copy_template(database_url: str, env: Mapping[str, str], target_url: str, bindir: Path) -> None:
    """The migrated template of ``database_url``'s server, dumped (pg_dump, a client
    like any other: the server is not copied) and restored into the empty database
    at ``target_url`` on another server (the --replica bench's throwaway primary)."""
    import subprocess

    template = migrated_template(database_url, env)
    source = urllib.parse.urlunsplit(
        urllib.parse.urlsplit(database_url)._replace(path=f"/{template}")
    )
    dump = subprocess.run(  # noqa: S603
        [str(bindir / "pg_dump"), "--no-owner", "--no-privileges", "-d", source],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(  # noqa: S603
        [str(bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", target_url],
        input=dump,
        stdout=subprocess.DEVNULL,
        check=True,
    )
