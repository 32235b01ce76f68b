import datetime as dt
import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from billing.metering.partitions import (
    DEFAULT_PARTITION,
    add_months,
    partition_name,
    usage_partitions_create,
    usage_partitions_maintain,
    usage_retention_apply,
)
from billing.metering.selectors import utc_today
from billing.metering.services import meter_call
from billing.models import DailyUsage

THIS_MONTH = utc_today().replace(day=1)


def partition_of(agent_id, date) -> str:
    """The partition a row lives in, as PostgreSQL answers it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM billing_dailyusage"
            " WHERE agent_id = %s AND date = %s",
            [agent_id, date],
        )
        return cursor.fetchone()[0]


def partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits"
            " WHERE inhparent = 'billing_dailyusage'::regclass"
        )
        return {row[0] for row in cursor.fetchall()}


def table_kind() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'billing_dailyusage'::regclass")
        return cursor.fetchone()[0]


def usage_rows() -> set[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, agent_id, date, calls, refused FROM billing_dailyusage")
        return set(cursor.fetchall())


@pytest.mark.parametrize(
    ("month", "months", "expected"),
    [
        (dt.date(2026, 12, 1), 1, dt.date(2027, 1, 1)),
        (dt.date(2026, 1, 1), -1, dt.date(2025, 12, 1)),
        (dt.date(2026, 3, 1), -15, dt.date(2024, 12, 1)),
        (dt.date(2026, 3, 1), 0, dt.date(2026, 3, 1)),
    ],
    ids=["into-next-year", "into-last-year", "back-over-a-year", "none"],
)
def test_add_months_crosses_years(month, months, expected):
    assert add_months(month, months) == expected


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_migration_partitions_the_existing_table_with_its_rows_and_back(make_agent):
    first, second = make_agent(), make_agent()
    call_command("migrate", "billing", "0004", verbosity=0)
    try:
        assert table_kind() == "r"
        old = dt.date(2025, 11, 15)
        days = {
            (first.agent.id, old, 3, 0),
            (first.agent.id, dt.date(2026, 1, 31), 4, 1),
            (first.agent.id, dt.date(2026, 2, 1), 5, 0),
            (first.agent.id, utc_today(), 6, 2),
            (second.agent.id, utc_today(), 7, 0),
            (second.agent.id, dt.date(2030, 6, 30), 8, 0),
        }
        with connection.cursor() as cursor:
            for agent_id, date, calls, refused in days:
                cursor.execute(
                    "INSERT INTO billing_dailyusage (agent_id, date, calls, refused)"
                    " VALUES (%s, %s, %s, %s)",
                    [agent_id, date, calls, refused],
                )
        before = usage_rows()
        assert len(before) == 6
    finally:
        call_command("migrate", "billing", verbosity=0)

    assert table_kind() == "p"
    assert usage_rows() == before
    for agent_id, date, _, _ in days:
        assert partition_of(agent_id, date) == partition_name(date.replace(day=1))
    # Every month from the oldest row's to the newest's, and the default partition.
    months = (2030 - 2025) * 12 + 6 - 11 + 1
    expected = {partition_name(add_months(dt.date(2025, 11, 1), n)) for n in range(months)}
    assert partitions() == expected | {DEFAULT_PARTITION}

    # The metering upsert still finds its unique (agent_id, date), and new ids follow
    # the copied ones.
    assert meter_call(agent_id=first.agent.id).allowed
    assert DailyUsage.objects.get(agent=first.agent, date=utc_today()).calls == 7
    third = make_agent()
    assert meter_call(agent_id=third.agent.id).allowed
    new = DailyUsage.objects.get(agent=third.agent)
    assert new.id > max(row[0] for row in before)
    assert partition_of(third.agent.id, utc_today()) == partition_name(THIS_MONTH)

    after = usage_rows()
    call_command("migrate", "billing", "0004", verbosity=0)
    try:
        assert table_kind() == "r"
        assert usage_rows() == after
    finally:
        call_command("migrate", "billing", verbosity=0)
    assert table_kind() == "p"
    assert usage_rows() == after

    # An empty table gets this month, the next three and the default partition (and
    # the months made above are gone again for the other tests).
    DailyUsage.objects.all().delete()
    call_command("migrate", "billing", "0004", verbosity=0)
    call_command("migrate", "billing", verbosity=0)
    assert partitions() == {partition_name(add_months(THIS_MONTH, n)) for n in range(4)} | {
        DEFAULT_PARTITION
    }


@pytest.mark.requires_postgres
@pytest.mark.django_db
def test_the_job_creates_the_coming_months_once():
    later = add_months(THIS_MONTH, 12)
    expected = [partition_name(add_months(later, n)) for n in range(4)]

    assert usage_partitions_create(today=later) == expected
    assert usage_partitions_create(today=later) == []
    assert set(expected) <= partitions()


@pytest.mark.requires_postgres
@pytest.mark.django_db
def test_creating_a_month_does_not_wait_for_a_call_in_flight():
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as other:
        # A metered call's upsert into this month, not committed yet (its foreign key
        # is checked at commit, which never comes: it rolls back).
        other.execute(
            "INSERT INTO billing_dailyusage (agent_id, date, calls) VALUES (%s, %s, 1)",
            [uuid.uuid4(), utc_today()],
        )
        later = add_months(THIS_MONTH, 12)
        started = time.monotonic()

        assert partition_name(later) in usage_partitions_create(today=later)

        # CREATE TABLE ... PARTITION OF would wait for the call's lock on the table,
        # then fail at the 5 s lock timeout.
        assert time.monotonic() - started < 2
        other.rollback()


@pytest.mark.requires_postgres
@pytest.mark.django_db
def test_a_day_without_its_month_is_metered_into_the_default_partition(registered, clock):
    clock.advance(days=3 * 366)
    month = clock.now.date().replace(day=1)
    assert partition_name(month) not in partitions()

    assert meter_call(agent_id=registered.agent.id).allowed
    assert meter_call(agent_id=registered.agent.id).allowed

    assert partition_of(registered.agent.id, clock.now.date()) == DEFAULT_PARTITION
    assert partition_name(month) in usage_partitions_create(today=month)
    # Moved into its month, and still counted there.
    assert partition_of(registered.agent.id, clock.now.date()) == partition_name(month)
    assert DailyUsage.objects.get(agent=registered.agent).calls == 2
    assert meter_call(agent_id=registered.agent.id).allowed
    assert DailyUsage.objects.get(agent=registered.agent).calls == 3


@pytest.mark.requires_postgres
@pytest.mark.django_db
def test_retention_drops_the_months_before_it(registered, settings):
    settings.LITHTRIX_USAGE_RETENTION_MONTHS = 2
    usage_partitions_create(today=add_months(THIS_MONTH, -6), months_ahead=6)
    agent = registered.agent
    for months_back in (5, 3, 2, 1, 0):
        DailyUsage.objects.create(agent=agent, date=add_months(THIS_MONTH, -months_back), calls=1)
    # Older than any month partition: it sits in the default one.
    DailyUsage.objects.create(agent=agent, date=dt.date(2001, 1, 15), calls=1)
    # Check the foreign keys now: the job runs in a transaction of its own, never in
    # the one that wrote the rows, and DDL refuses a table with checks pending.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    dropped = usage_retention_apply()

    assert dropped == [partition_name(add_months(THIS_MONTH, -n)) for n in (6, 5, 4, 3)]
    assert not set(dropped) & partitions()
    with connection.cursor() as cursor:  # dropped, not merely detached
        for name in dropped:
            cursor.execute("SELECT to_regclass(%s)", [name])
            assert cursor.fetchone()[0] is None
    assert sorted(DailyUsage.objects.values_list("date", flat=True)) == [
        add_months(THIS_MONTH, -n) for n in (2, 1, 0)
    ]
    assert partition_name(add_months(THIS_MONTH, -2)) in partitions()
    assert DEFAULT_PARTITION in partitions()


@pytest.mark.django_db
def test_retention_deletes_the_days_before_its_cutoff(registered, settings):
    settings.LITHTRIX_USAGE_RETENTION_MONTHS = 1
    cutoff = add_months(THIS_MONTH, -1)
    for date in (cutoff - dt.timedelta(days=1), cutoff, utc_today()):
        DailyUsage.objects.create(agent=registered.agent, date=date, calls=1)

    usage_retention_apply()

    assert sorted(DailyUsage.objects.values_list("date", flat=True)) == [cutoff, utc_today()]


@pytest.mark.django_db
def test_without_retention_usage_is_kept_forever(registered, settings):
    settings.LITHTRIX_USAGE_RETENTION_MONTHS = None
    DailyUsage.objects.create(agent=registered.agent, date=dt.date(2001, 1, 15), calls=1)

    assert usage_retention_apply() == []

    assert DailyUsage.objects.filter(date=dt.date(2001, 1, 15)).exists()


@pytest.mark.django_db
def test_the_periodic_job_is_registered_and_a_no_op_when_all_is_in_place():
    assert django_settings.LITHTRIX_PERIODIC_JOBS["usage_partitions"] == {
        "func": "billing.metering.partitions.usage_partitions_maintain",
        "minutes": 360,
    }
    # The migration made this month and the next three (PostgreSQL); SQLite has none.
    assert usage_partitions_maintain() == "created none; dropped none"


def retention_setting(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITHTRIX_", "PYTEST"))}
    if value is not None:
        env["LITHTRIX_USAGE_RETENTION_MONTHS"] = value
    code = "import lithtrix.settings as s; print(s.LITHTRIX_USAGE_RETENTION_MONTHS)"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "DJANGO_DEBUG": "on"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "None"), ("", "None"), ("12", "12")],
    ids=["unset", "empty", "set"],
)
def test_retention_setting_is_a_number_of_months_or_unset(value, expected):
    result = retention_setting(value)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("value", ["0", "-1", "six", "1.5"])
def test_a_retention_setting_that_keeps_no_month_stops_the_start(value):
    result = retention_setting(value)

    assert result.returncode != 0
    assert "LITHTRIX_USAGE_RETENTION_MONTHS must be a whole number >= 1" in result.stderr
