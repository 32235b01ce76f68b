# ruff: noqa: S603 - the drill starts its own processes from fixed arguments
"""Owner e-mail through an SMTP outage, under the real job worker (manage.py qcluster).

The mail server (aiosmtpd on loopback) is down when an event is recorded: the send
job fails and nothing is lost; once the server is back, the periodic retry delivers
the message, exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from drills.conftest import ROWS, Postgres
from testing.servers import BASE_DIR, app_environment
from testing.smtp import SmtpServer

# The retry sweep runs every minute, started by django-q2's scheduler, which checks
# every 15 s (more on a loaded machine): a due retry is sent within ~75 s.
DELIVERY_BOUND = 150.0
OUTAGE_SECONDS = 8.0

RECORD_EVENT = """
from django.db import transaction
from accounts.services import agent_register
from events.services import event_record
registration = agent_register(agent_name={name!r}, owner_identifier={owner!r})
with transaction.atomic():
    event_record(agent=registration.agent, type="billing.payment_failed", data={{}})
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    try:
        yield server
    finally:
        server.stop()


def worker_environment(postgres: Postgres, smtp: SmtpServer) -> dict[str, str]:
    return app_environment(
        {
            "DATABASE_URL": postgres.url,
            # The worker keeps no rate-limit counters.
            "LITHTRIX_SINGLE_PROCESS": "on",
            "EMAIL_URL": f"{smtp.url}?timeout=5",
            "LITHTRIX_PUBLIC_URL": "https://api.drill.test",
            "LITHTRIX_JOB_WORKERS": "1",
            # The retry is due 5 s after a failure (60 s by default): the sweep's
            # minute, not the backoff, is what the drill waits for.
            "LITHTRIX_JOB_BACKOFF_SECONDS": "5",
        }
    )


def deliveries(postgres: Postgres, owner: str) -> list[tuple[str, int, str]]:
    return postgres.query(
        "SELECT status, attempts, last_error FROM mail_owneremail WHERE address = %s", owner
    )


def wait_for(condition, timeout: float) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - start


def test_smtp_outage_delays_owner_email_then_delivers_it_once(postgres, smtp, tmp_path: Path):
    owner = f"owner-{uuid.uuid4().hex[:8]}@drill.test"
    env = worker_environment(postgres, smtp)
    # The periodic jobs (the retry sweep among them) were synced by the fixture's migrate.
    log = open(tmp_path / "qcluster.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # The mail server is down (nothing listens on its port) when the event happens.
        recorded = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                RECORD_EVENT.format(name=owner, owner=owner),
            ],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert recorded.returncode == 0, recorded.stderr
        outage_start = time.monotonic()
        wait_for(lambda: any(attempts >= 1 for _, attempts, _ in deliveries(postgres, owner)), 30)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_start)))
        ((status, attempts, error),) = deliveries(postgres, owner)
        during = f"{status}, {attempts} attempt(s), {error}"

        smtp.start()
        recovery = wait_for(lambda: smtp.recipients, DELIVERY_BOUND)
        # Long enough for another sweep (and a duplicate, were there one) to run.
        time.sleep(20)
        after = deliveries(postgres, owner)
        ROWS.append(
            {
                "drill": "smtp stopped",
                "broken": f"mail server down {OUTAGE_SECONDS:.0f} s while an event is recorded",
                "clients saw": f"owner e-mail {during}",
                "unaffected p50/p99": "-",
                "recovery": f"delivered {recovery:.1f} s after SMTP was back",
                "calls_total": f"{len(smtp.recipients)} message(s) received",
            }
        )
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()

    assert status == "pending", during
    assert error == "ConnectionRefusedError: Connection refused", during
    assert smtp.recipients == [[owner]]
    ((status, attempts_after, error),) = after
    assert (status, error) == ("sent", "")
    assert attempts_after > attempts
    (message,) = smtp.messages
    assert message["Subject"] == "A payment for your agent failed"
    assert message["List-Unsubscribe"].strip().startswith("<https://api.drill.test/v1/unsubscribe?")
