"""The job system: django-q2 on the ORM broker (the project's own database).

A job is enqueued by an INSERT in the same transaction as the change that causes it,
so a committed change always has its job and a rolled-back one never does. Workers
(`make worker`, deploy/) run on any number of hosts; django-q2 hands each job to one
of them and hands it out again when its worker dies before acknowledging it.
"""

import os

from lithtrix.settings.env import env_bool

Q_CLUSTER = {
    "name": "lithtrix",
    # The ORM broker: jobs live in the project's database (SQLite under make run,
    # PostgreSQL in production), written in the caller's transaction.
    "orm": "default",
    "workers": int(os.environ.get("LITHTRIX_JOB_WORKERS", "2")),
    # A job may run this long; one not acknowledged within `retry` seconds (its worker
    # was killed) is handed out again.
    "timeout": int(os.environ.get("LITHTRIX_JOB_TIMEOUT", "60")),
    "retry": int(os.environ.get("LITHTRIX_JOB_RETRY", "90")),
    "max_attempts": int(os.environ.get("LITHTRIX_JOB_MAX_ATTEMPTS", "10")),
    # Failed jobs stay in the database: the staff console lists them and resubmits.
    "save_limit": 1000,
    "ack_failures": True,
    "poll": 0.5,
    "catch_up": False,
    "sync": env_bool("LITHTRIX_JOBS_SYNC"),
}
