import datetime as dt

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from events.jobs import PERIODIC_PREFIX, backoff_seconds, periodic_jobs_sync, retry_with_backoff
from events.models import Event
from events.services import event_record
from events.tasks import event_sweep

calls: list[str] = []


@retry_with_backoff
def flaky_job(label: str) -> str:
    calls.append(label)
    raise ConnectionError("SMTP server down")


@pytest.fixture(autouse=True)
def _no_calls():
    calls.clear()


@pytest.fixture
def tries(settings):
    settings.LITHTRIX_JOB_TRIES = 4
    settings.LITHTRIX_JOB_BACKOFF_SECONDS = 60
    settings.LITHTRIX_JOB_BACKOFF_MAX_SECONDS = 180


def retries() -> list[Schedule]:
    return list(Schedule.objects.filter(func="events.tests.test_jobs.flaky_job"))


def test_backoff_doubles_up_to_its_cap(tries):
    assert [backoff_seconds(attempt) for attempt in (1, 2, 3, 4)] == [60, 120, 180, 180]


@pytest.mark.django_db
def test_failed_job_schedules_its_next_try_after_the_backoff(tries):
    before = timezone.now()

    result = flaky_job("a")

    assert calls == ["a"]
    assert result == "failed try 1; next in 60 s"
    [retry] = retries()
    assert retry.schedule_type == Schedule.ONCE
    assert retry.args == "('a',)"
    assert "'attempt': 2" in retry.kwargs
    assert before + dt.timedelta(seconds=60) <= retry.next_run
    assert retry.next_run <= timezone.now() + dt.timedelta(seconds=60)


@pytest.mark.django_db
def test_later_tries_wait_longer(tries):
    before = timezone.now()

    flaky_job("a", attempt=3)

    [retry] = retries()
    assert "'attempt': 4" in retry.kwargs
    assert retry.next_run >= before + dt.timedelta(seconds=180)


@pytest.mark.django_db
def test_last_try_raises_so_django_q_keeps_it_as_a_failed_task(tries):
    with pytest.raises(ConnectionError, match="SMTP server down"):
        flaky_job("a", attempt=4)

    assert calls == ["a"]
    assert retries() == []


@pytest.mark.django_db
def test_a_job_that_succeeds_schedules_nothing(tries):
    @retry_with_backoff
    def fine() -> str:
        return "ok"

    assert fine() == "ok"
    assert not Schedule.objects.exclude(name__startswith=PERIODIC_PREFIX).exists()


def periodic() -> dict[str, tuple[str, int | None]]:
    return {
        s.name: (s.func, s.minutes)
        for s in Schedule.objects.filter(name__startswith=PERIODIC_PREFIX)
    }


@pytest.mark.django_db
def test_migrate_syncs_the_declared_periodic_jobs(settings):
    Schedule.objects.all().delete()

    call_command("migrate", "events", verbosity=0)

    assert periodic() == {
        f"periodic:{name}": (job["func"], job["minutes"])
        for name, job in settings.LITHTRIX_PERIODIC_JOBS.items()
    }
    assert periodic()["periodic:idempotency_purge"] == (
        "idempotency.services.idempotency_purge",
        60,
    )
    assert periodic()["periodic:event_sweep"] == ("events.tasks.event_sweep", 5)
    assert periodic()["periodic:owner_email_retry"] == ("mail.tasks.owner_emails_retry", 1)
    assert periodic()["periodic:stripe_reconcile"] == (
        "billing.payments.reconciliation.stripe_reconcile",
        60,
    )
    assert {s.schedule_type for s in Schedule.objects.all()} == {Schedule.MINUTES}


@pytest.mark.django_db
def test_sync_updates_changed_jobs_deletes_undeclared_ones_and_leaves_others(settings):
    retry = schedule("events.tasks.event_dispatch", "evt_x", schedule_type=Schedule.ONCE)
    settings.LITHTRIX_PERIODIC_JOBS = {
        "idempotency_purge": {"func": "idempotency.services.idempotency_purge", "minutes": 15}
    }

    periodic_jobs_sync()

    assert periodic() == {
        "periodic:idempotency_purge": ("idempotency.services.idempotency_purge", 15)
    }
    assert Schedule.objects.filter(pk=retry.pk).exists()


@pytest.mark.django_db
def test_sweep_dispatches_events_left_without_a_job(make_agent, clock):
    agent = make_agent().agent
    with transaction.atomic():
        old = event_record(agent=agent, type="usage.near_limit", data={"calls_total": 240})
    clock.advance(minutes=11)
    with transaction.atomic():
        new = event_record(agent=agent, type="usage.limit_reached", data={"calls_total": 300})

    assert event_sweep() == 1

    assert Event.objects.get(id=old.id).dispatched_at == clock.now
    assert Event.objects.get(id=new.id).dispatched_at is None
    assert event_sweep() == 0
