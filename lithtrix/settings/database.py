"""The database: DATABASE_URL (SQLite file by default)."""

import os

import dj_database_url

from lithtrix.settings.env import BASE_DIR, env_bool

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
    # Django's backend, with a health check that needs no SELECT 1 per request.
    _default["ENGINE"] = "lithtrix.postgresql"
    # The hot path's fixed statements (lithtrix.db) are prepared once per connection.
    # Off for a pooler that cannot keep prepared statements (PgBouncer < 1.21 in
    # transaction mode); Django's own queries are never prepared either way.
    if env_bool("DJANGO_DB_PREPARED_STATEMENTS", default=True):
        _default.setdefault("OPTIONS", {})["prepare_threshold"] = 5

DATABASES = {"default": _default}
