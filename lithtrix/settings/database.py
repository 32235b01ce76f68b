"""The database: DATABASE_URL (SQLite file by default)."""

import os

import dj_database_url

from lithtrix.settings.env import BASE_DIR

_default = dj_database_url.parse(
    os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
    conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
    conn_health_checks=True,
)
if _default["ENGINE"] == "django.db.backends.sqlite3":
    # The threaded dev server writes from several threads at once: take the write
    # lock at BEGIN (no upgrade deadlocks) and wait for it instead of failing with
    # "database is locked". WAL lets readers run beside the writer.
    _default["CONN_MAX_AGE"] = 0
    _default["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

elif _default["ENGINE"] == "django.db.backends.postgresql":
    # An unreachable database fails a request within seconds (503), not after the
    # operating system's TCP timeout.
    _default.setdefault("OPTIONS", {})["connect_timeout"] = int(
        os.environ.get("LITHTRIX_DB_CONNECT_TIMEOUT_SECONDS", "3")
    )

DATABASES = {"default": _default}
