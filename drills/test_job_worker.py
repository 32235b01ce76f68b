# ruff: noqa: S603 - the drill starts its own workers from fixed arguments
"""Fault drill: a job worker SIGKILLed mid-job. The job is handed out again after
LITHTRIX_JOB_RETRY seconds, to another worker (another "host"), and its effect —
an event dispatched — happens exactly once, whether the kill came before the effect
or after it (before the job was acknowledged)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drills.conftest import ROWS
from testing.servers import BASE_DIR, app_environment

# Small on purpose: a job whose worker died is handed out again after RETRY seconds;
# a job may run TIMEOUT seconds (more than the drill job's pause, less than RETRY).
TIMEOUT = 4
RETRY = 5


def job_env(postgres) -> dict[str, str]:
    return app_environment(
        {
            "DATABASE_URL": postgres.url,
            "REDIS_URL": "",
            "LITHTRIX_SINGLE_PROCESS": "on",
            "LITHTRIX_JOB_TIMEOUT": str(TIMEOUT),
            "LITHTRIX_JOB_RETRY": str(RETRY),
            "LITHTRIX_JOB_WORKERS": "1",
        }
    )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    # Its own process group: SIGKILL to the group is the whole host going away.
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    """SIGTERM to qcluster alone (as systemd's KillMode=mixed): it stops its workers."""
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def enqueue(env: dict[str, str], marker: Path, kill_point: str) -> str:
    """A new agent's agent.deleted event, its job the drill's, in one committed transaction."""
    script = f"""
from django.db import transaction
from django_q.tasks import async_task
from accounts.services import agent_register
from events.models import Event
agent = agent_register(agent_name="drill-{kill_point}", owner_identifier="d@x.io").agent
with transaction.atomic():
    event = Event.objects.create(agent=agent, type="agent.deleted", data={{}})
    async_task(
        "drills.jobs.dispatch_with_pause", event.id, {str(marker)!r}, {kill_point!r},
        task_name="drill:" + event.id,
    )
print(event.id)
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def wait_for(condition, seconds: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {seconds} s")


@pytest.mark.parametrize("kill_point", ["before_effect", "after_effect"])
def test_job_worker_killed_mid_job(postgres, tmp_path, kill_point):
    env = job_env(postgres)
    marker = tmp_path / "marker"
    marker.mkdir()
    event_id = enqueue(env, marker, kill_point)

    def dispatched_at():
        rows = postgres.query("SELECT dispatched_at FROM events_event WHERE id = %s", event_id)
        return rows[0][0]

    first = start_worker(env, tmp_path / "first.log")
    wait_for((marker / "paused").exists, 60, "the first worker starting the job")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    assert not (marker / "not_killed").exists(), "killed after the pause: too slow to drill"
    after_kill = dispatched_at()

    second = start_worker(env, tmp_path / "second.log")
    try:
        wait_for(
            lambda: (marker / "runs").read_text().count("run") == 2 and dispatched_at() is not None,
            RETRY + 60,
            "the job handed out again and done",
        )
        # The second run's acknowledgement: the queue is empty, one success recorded.
        wait_for(
            lambda: postgres.query("SELECT count(*) FROM django_q_ormq")[0][0] == 0,
            30,
            "the job acknowledged",
        )
        redelivered_after = time.monotonic() - killed_at
    finally:
        stop_worker(second)

    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    effects = logs.count(f"event {event_id} (agent.deleted) dispatched")
    successes = postgres.query(
        "SELECT count(*) FROM django_q_task WHERE name = %s AND success", f"drill:{event_id}"
    )[0][0]
    ROWS.append(
        {
            "drill": f"job worker SIGKILLed ({kill_point.replace('_', ' ')})",
            "broken": "qcluster and its workers, SIGKILL",
            "clients saw": f"job run 2x, effect {effects}x",
            "recovery": f"done {redelivered_after:.1f} s after the kill (retry {RETRY} s)",
        }
    )
    assert effects == 1, logs
    assert successes == 1
    if kill_point == "after_effect":
        # Done before the kill; the second run found it done and changed nothing.
        assert after_kill is not None and dispatched_at() == after_kill
    else:
        assert after_kill is None and dispatched_at() is not None


# Long enough for django-q2's own broker to have killed its pusher twice (it sleeps
# 10 s after a failed poll, then exits with a traceback for the cluster to restart it).
OUTAGE_SECONDS = 25


def test_job_worker_rides_out_a_database_outage(postgres, tmp_path):
    env = job_env(postgres)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        wait_for(lambda: "Q Cluster" in log.read_text() and "running" in log.read_text(), 60,
                 "the worker running")  # fmt: skip
        postgres.stop("fast")
        try:
            time.sleep(OUTAGE_SECONDS)
            assert worker.poll() is None, log.read_text()
        finally:
            postgres.start()
        restarted = time.monotonic()
        script = (
            "from django_q.tasks import async_task; "
            "async_task('math.floor', 1.5, task_name='drill:after-outage')"
        )
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script], cwd=BASE_DIR, env=env, check=True
        )
        done_after = wait_for(
            lambda: (
                postgres.query(
                    "SELECT count(*) FROM django_q_task WHERE name = %s AND success",
                    "drill:after-outage",
                )[0][0]
                == 1
            ),
            60,
            "a job enqueued once the database is back, done",
        )
        recovered_after = time.monotonic() - restarted
    finally:
        stop_worker(worker)

    text = log.read_text()
    outage_lines = text.count("database unavailable (OperationalError)")
    ROWS.append(
        {
            "drill": "database stopped under the job worker",
            "broken": f"PostgreSQL stopped {OUTAGE_SECONDS} s",
            "clients saw": f"{outage_lines} outage line(s), no traceback, no pusher restart",
            "recovery": f"next job done {recovered_after:.1f} s after the restart "
            f"({done_after:.1f} s after it was enqueued)",
        }
    )
    assert "Traceback" not in text, text
    assert "reincarnated" not in text, text
    # The pusher's, and the sentinel's scheduler's: once each in the log interval.
    assert 1 <= outage_lines <= 2, text
    assert "database available again" in text, text
