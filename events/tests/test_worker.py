"""A real worker (manage.py qcluster, a separate process) runs what a commit enqueued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection, transaction

from events.models import Event
from events.services import event_record


def start_worker(log_path) -> subprocess.Popen:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "lithtrix.settings"}
    env.setdefault("DJANGO_SECRET_KEY", "loopback-only-secret-key-" + "x" * 40)
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()  # qcluster alone: it stops its own workers
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_the_job_of_a_committed_change(make_agent, tmp_path):
    agent = make_agent().agent
    with transaction.atomic():
        event = event_record(agent=agent, type="agent.deleted", data={})
    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(agent=agent, type="key.leaked", data={})
        raise RuntimeError("rolled back")

    worker = start_worker(tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Event.objects.filter(id=event.id, dispatched_at__isnull=False).exists():
                break
            time.sleep(0.2)
    finally:
        stop_worker(worker)

    log = (tmp_path / "worker.log").read_text()
    assert Event.objects.get(id=event.id).dispatched_at is not None, log
    assert Event.objects.count() == 1
    assert log.count(" dispatched") == 1


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_queue_run_each_job_once(make_agent, tmp_path):
    agent = make_agent().agent
    with transaction.atomic():
        events = [
            event_record(agent=agent, type="usage.near_limit", data={"n": n}) for n in range(30)
        ]

    workers = [start_worker(tmp_path / f"worker{n}.log") for n in (1, 2)]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not Event.objects.filter(dispatched_at__isnull=True).exists():
                break
            time.sleep(0.2)
    finally:
        for worker in workers:
            stop_worker(worker)

    logs = [(tmp_path / f"worker{n}.log").read_text() for n in (1, 2)]
    assert not Event.objects.filter(dispatched_at__isnull=True).exists(), logs
    for event in events:
        assert (
            sum(log.count(f"event {event.id} (usage.near_limit) dispatched") for log in logs) == 1
        )
