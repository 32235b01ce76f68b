"""The job system: django-q2 on the ORM broker (the project's own database).

A job is enqueued by an INSERT in the same transaction as the change that causes it,
so a committed change always has its job and a rolled-back one never does. Workers
(`make worker`, deploy/) run on any number of hosts; django-q2 hands each job to one
of them and hands it out again when its worker dies before acknowledging it.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from lithtrix.settings.env import env_bool, env_int

Q_CLUSTER = {
    "name": "lithtrix",
    # The ORM broker: jobs live in the project's database (SQLite under make run,
    # PostgreSQL in production), written in the caller's transaction.
    "orm": "default",
    # ... through a broker that waits out a database outage instead of a pusher that
    # dies of it every 10 s (events/broker.py).
    "broker_class": "events.broker.OutageTolerantORM",
    "workers": env_int("LITHTRIX_JOB_WORKERS", 2),
    # A job may run this long; one not acknowledged within `retry` seconds (its worker
    # was killed) is handed out again.
    "timeout": env_int("LITHTRIX_JOB_TIMEOUT", 60),
    "retry": env_int("LITHTRIX_JOB_RETRY", 90),
    "max_attempts": env_int("LITHTRIX_JOB_MAX_ATTEMPTS", 10),
    # Failed jobs stay in the database: the staff console lists them and resubmits.
    "save_limit": 1000,
    "ack_failures": True,
    "poll": 0.5,
    "catch_up": False,
    "sync": env_bool("LITHTRIX_JOBS_SYNC"),
}

# A job that raises is tried again after LITHTRIX_JOB_BACKOFF_SECONDS, doubling each
# time up to LITHTRIX_JOB_BACKOFF_MAX_SECONDS, LITHTRIX_JOB_TRIES times in all
# (events.jobs.retry_with_backoff); the last failure is a django-q2 failed task, the
# dead letter staff see and resubmit in the admin. The defaults try for about 2 hours
# (1, 2, 4 ... 32, 60 minutes apart).
LITHTRIX_JOB_TRIES = env_int("LITHTRIX_JOB_TRIES", 8)
LITHTRIX_JOB_BACKOFF_SECONDS = env_int("LITHTRIX_JOB_BACKOFF_SECONDS", 60)
LITHTRIX_JOB_BACKOFF_MAX_SECONDS = env_int("LITHTRIX_JOB_BACKOFF_MAX_SECONDS", 3600)

# How often every agent whose tier depends on Stripe is re-read from it and repaired
# (billing.payments.reconciliation).
LITHTRIX_RECONCILE_MINUTES = env_int("LITHTRIX_RECONCILE_MINUTES", 60)

# Daily usage older than this many whole months before the current one is dropped
# (billing.metering.partitions); unset keeps it forever.
_retention = os.environ.get("LITHTRIX_USAGE_RETENTION_MONTHS", "").strip()
if _retention and not (_retention.isdigit() and int(_retention) >= 1):
    raise ImproperlyConfigured("LITHTRIX_USAGE_RETENTION_MONTHS must be a whole number >= 1.")
LITHTRIX_USAGE_RETENTION_MONTHS: int | None = int(_retention) if _retention else None

# Periodic jobs, the one list: name -> {"func": dotted path, "minutes": interval}.
# After every migrate, events.apps syncs them into django-q2's Schedule table
# (created or updated by name; ones no longer listed are deleted).
LITHTRIX_PERIODIC_JOBS: dict[str, dict] = {
    # Answers kept for Idempotency-Key replays past LITHTRIX_IDEMPOTENCY_TTL_HOURS.
    "idempotency_purge": {"func": "idempotency.services.idempotency_purge", "minutes": 60},
    # Events whose dispatch job was never enqueued (a crash between the metering
    # statement and its enqueue) are dispatched here.
    "event_sweep": {"func": "events.tasks.event_sweep", "minutes": 5},
    # Agent webhook deliveries that are due: retries on the Standard Webhooks schedule,
    # and attempts whose worker died after claiming them.
    "webhook_deliveries_resume": {"func": "webhooks.tasks.deliveries_resume", "minutes": 1},
    # Owner e-mails whose retry is due (mail.services.owner_emails_due_enqueue).
    "owner_email_retry": {"func": "mail.tasks.owner_emails_retry", "minutes": 1},
    "stripe_reconcile": {
        "func": "billing.payments.reconciliation.stripe_reconcile",
        "minutes": LITHTRIX_RECONCILE_MINUTES,
    },
    # The coming months' partitions of billing_dailyusage (PostgreSQL), and the months
    # past LITHTRIX_USAGE_RETENTION_MONTHS dropped. A no-op when all is in place.
    "usage_partitions": {
        "func": "billing.metering.partitions.usage_partitions_maintain",
        "minutes": 360,
    },
}
