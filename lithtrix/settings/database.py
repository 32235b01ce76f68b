"""The database: DATABASE_URL (SQLite file by default)."""

import copy
import os

import dj_database_url

from lithtrix.settings.env import BASE_DIR, env_bool, env_float, env_int

_default = dj_database_url.parse(
    os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
    conn_max_age=env_int("DJANGO_CONN_MAX_AGE", 60),
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
    # Code that asks which database this is reads connection.vendor ("postgresql").
    _default["ENGINE"] = "lithtrix.core.postgresql"
    # An unreachable database fails a request within seconds (503), not after the
    # operating system's TCP timeout.
    _default.setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "LITHTRIX_DB_CONNECT_TIMEOUT_SECONDS", 3
    )

# DATABASE_POOLING=pgbouncer: DATABASE_URL points at PgBouncer in transaction pooling
# mode, where consecutive transactions of one client may run on different server
# connections. What needs one server connection for longer than a transaction is
# off: psycopg's server-side prepared statements (PgBouncer 1.18 cannot track them)
# and server-side cursors (a named cursor lives past its transaction). Connections to
# PgBouncer are cheap and stay open (CONN_MAX_AGE); it holds the real ones.
DATABASE_POOLING = os.environ.get("DATABASE_POOLING", "").strip().lower()
if DATABASE_POOLING not in ("", "pgbouncer"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("DATABASE_POOLING must be empty or 'pgbouncer'.")

if _default["ENGINE"] == "lithtrix.core.postgresql":
    # The hot path's fixed statements (lithtrix.core.db) are prepared once per connection,
    # unless DJANGO_DB_PREPARED_STATEMENTS is off or PgBouncer pools the connections
    # (prepare_threshold None: lithtrix.core.db then binds without preparing). Django's own
    # queries are never prepared either way.
    _prepare = env_bool("DJANGO_DB_PREPARED_STATEMENTS", default=True)
    _default["OPTIONS"]["prepare_threshold"] = (
        5 if _prepare and DATABASE_POOLING != "pgbouncer" else None
    )
    if DATABASE_POOLING == "pgbouncer":
        _default["DISABLE_SERVER_SIDE_CURSORS"] = True
    # Bounds on every statement and every lock wait, sent at connect (libpq options):
    # past them PostgreSQL cancels the statement and the request gets the 503
    # envelope, well inside gunicorn's worker timeout, instead of a worker held until
    # it is killed. deploy/gunicorn.conf.py sets them for the processes that serve
    # requests; migrate and the job worker run unbounded. 0 or unset: no bound.
    # PgBouncer 1.18 refuses the options startup parameter: behind it, set them on
    # the database role (docs/operations.md).
    _bounds = {
        "statement_timeout": os.environ.get("LITHTRIX_DB_STATEMENT_TIMEOUT_MS", "0"),
        "lock_timeout": os.environ.get("LITHTRIX_DB_LOCK_TIMEOUT_MS", "0"),
    }
    for _name, _value in _bounds.items():
        if not _value.strip().isdigit():
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"LITHTRIX_DB_{_name.upper()}_MS must be a whole number of milliseconds."
            )
    _sent = " ".join(f"-c {n}={v.strip()}" for n, v in _bounds.items() if int(v) > 0)
    if _sent and DATABASE_POOLING != "pgbouncer":
        _given = _default["OPTIONS"].get("options", "")
        _default["OPTIONS"]["options"] = f"{_given} {_sent}".strip()

DATABASES = {"default": _default}

# DATABASE_REPLICA_URL: a streaming replica of the same database, for the reads that
# may lag (lithtrix.core.replica says which). Same options as the primary, but a short
# connect timeout: a replica that is down costs a read that long once, then the
# primary answers (libpq waits at least 2 s whatever is asked).
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "").strip()
# After a failed read there, each process sends reads to the primary this long.
LITHTRIX_REPLICA_RETRY_SECONDS = env_float("LITHTRIX_REPLICA_RETRY_SECONDS", 10)
if DATABASE_REPLICA_URL:
    _parsed = dj_database_url.parse(DATABASE_REPLICA_URL)
    _replica = copy.deepcopy(_default)
    for _where in ("NAME", "USER", "PASSWORD", "HOST", "PORT"):
        _replica[_where] = _parsed.get(_where, "")  # type: ignore[typeddict-item]
    _replica["OPTIONS"] = {**_default.get("OPTIONS", {}), **_parsed.get("OPTIONS", {})}
    if _replica["ENGINE"] != "lithtrix.core.postgresql":
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL.")
    _replica["OPTIONS"]["connect_timeout"] = env_int(
        "LITHTRIX_DB_REPLICA_CONNECT_TIMEOUT_SECONDS", 2
    )
    # Tests never create a database on a read-only standby: the replica alias reads
    # the test database.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica

# Writes and migrations on the primary only; reads choose with .using().
DATABASE_ROUTERS = ["lithtrix.core.replica.PrimaryRouter"]
