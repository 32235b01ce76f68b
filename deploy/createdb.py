"""Create DATABASE_URL's PostgreSQL database when it does not exist (make serve).

    DATABASE_URL=postgres://user@host:5432/name python deploy/createdb.py

Nothing to do for SQLite (the file is created on first use) or when the database
exists. Needs a role allowed to CREATE DATABASE; otherwise it says so and fails.
"""

from __future__ import annotations

import os
import sys

import dj_database_url
import psycopg
from psycopg import sql


def main() -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return 0
    config = dj_database_url.parse(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        return 0
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        **config.get("OPTIONS", {}),
    }
    params = {key: value for key, value in params.items() if value is not None}
    name = config["NAME"]
    try:
        psycopg.connect(dbname=name, connect_timeout=10, **params).close()
        return 0
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    # The maintenance database every PostgreSQL has.
    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"Created PostgreSQL database {name}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
