"""Monthly partitions of DailyUsage on PostgreSQL, and how long usage is kept.

Since migration 0005 billing_dailyusage is PARTITION BY RANGE (date): one partition
per UTC month, ``billing_dailyusage_yYYYYmMM``, and a DEFAULT partition that takes
any day no month covers, so a month whose partition is missing never fails a
metered call. The periodic job keeps the coming months created and drops the months
past LITHTRIX_USAGE_RETENTION_MONTHS. SQLite keeps a plain table: only retention
applies there, as a DELETE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from django.conf import settings
from django.db import connection, transaction

from billing.metering.selectors import utc_today
from billing.models import DailyUsage

# This month and the next three exist before any call needs them; the job runs far
# more often than that, so a failed run is retried long before a month is missing.
MONTHS_AHEAD = 3
# DDL waits this long for a lock, then fails (and the next run tries again), rather
# than queue metered calls behind it.
LOCK_TIMEOUT = "5s"
# One maintainer at a time (pg_advisory_xact_lock): two workers may run the job.
# Keyed like idempotency's locks, by a hash of a name of its own.
ADVISORY_LOCK = int.from_bytes(
    hashlib.blake2b(b"lithtrix.usage_partitions", digest_size=8).digest(), "big", signed=True
)

TABLE = DailyUsage._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
_MONTH_NAME = re.compile(rf"^{TABLE}_y(\d{{4}})m(\d{{2}})$")


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(month: dt.date, months: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def partition_name(month: dt.date) -> str:
    return f"{TABLE}_y{month:%Y}m{month:%m}"


def usage_partitions_maintain() -> str:
    """The periodic job: create the coming months, then drop the expired ones."""
    created = usage_partitions_create()
    dropped = usage_retention_apply()
    return f"created {created or 'none'}; dropped {dropped or 'none'}"


def usage_partitions_create(
    *, today: dt.date | None = None, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Create the partitions of this month and the next ``months_ahead`` that are missing.

    Idempotent, and safe with concurrent metered calls: each month is made as a table
    of its own and attached (ATTACH takes no lock that blocks calls into the other
    months). Rows of that month already in the DEFAULT partition move into it in the
    same transaction. Returns the partitions created. No-op on SQLite.
    """
    if connection.vendor != "postgresql":
        return []
    this_month = month_start(today or utc_today())
    months = [add_months(this_month, n) for n in range(months_ahead + 1)]
    return [partition_name(month) for month in months if _month_partition_create(month)]


def _month_partition_create(month: dt.date) -> bool:
    name = partition_name(month)
    bounds = {"start": month, "end": add_months(month, 1)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return False
        # ATTACH locks the default partition to check it holds no row of the month;
        # locking it first keeps a call from adding one after the move below.
        cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"""
            WITH moved AS (
                DELETE FROM {DEFAULT_PARTITION} WHERE date >= %(start)s AND date < %(end)s
                RETURNING id, date, calls, agent_id, refused
            )
            INSERT INTO {name} (id, date, calls, agent_id, refused)
            SELECT id, date, calls, agent_id, refused FROM moved
            """,  # noqa: S608 - table names from the model and a date
            bounds,
        )
        cursor.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%(start)s) TO (%(end)s)",
            bounds,
        )
    return True


def retention_cutoff(*, today: dt.date | None = None) -> dt.date | None:
    """The first day kept: LITHTRIX_USAGE_RETENTION_MONTHS whole months before this
    one (UTC). None when usage is kept forever (the setting is unset)."""
    months = settings.LITHTRIX_USAGE_RETENTION_MONTHS
    if months is None:
        return None
    return add_months(month_start(today or utc_today()), -months)


def usage_retention_apply(*, today: dt.date | None = None) -> list[str]:
    """Drop the usage older than the retention cutoff; returns the partitions dropped.

    PostgreSQL: each month partition wholly before the cutoff is detached and dropped
    (no row-by-row DELETE, no table bloat); older days in the DEFAULT partition are
    deleted. SQLite: one DELETE. Agents' lifetime counters (calls_total) are not
    derived from these rows and do not change.
    """
    cutoff = retention_cutoff(today=today)
    if cutoff is None:
        return []
    dropped = []
    if connection.vendor == "postgresql":
        for name, month in _month_partitions():
            if month < cutoff:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
                    cursor.execute(f"DROP TABLE {name}")
                dropped.append(name)
    DailyUsage.objects.filter(date__lt=cutoff).delete()
    return dropped


def _month_partitions() -> list[tuple[str, dt.date]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    months = []
    for name in names:
        match = _MONTH_NAME.match(name)
        if match:
            months.append((name, dt.date(int(match[1]), int(match[2]), 1)))
    return months
