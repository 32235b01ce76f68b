"""Owner e-mail tests: a real SMTP server (aiosmtpd) and the job queue run in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from accounts.models import Agent
from events.models import Event
from events.services import event_record
from keys.tests.test_leaked import github_key  # noqa: F401 - GitHub's signing key, a fixture
from testing.smtp import SmtpServer

LINK_BASE = "https://api.example.test"


@pytest.fixture
def smtp(settings) -> Iterator[SmtpServer]:
    """A real SMTP server on loopback, and Django's SMTP backend pointed at it."""
    server = SmtpServer()
    server.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.LITHTRIX_EMAIL_FROM = "Lithtrix <no-reply@lithtrix.test>"
    settings.LITHTRIX_EMAIL_LINK_BASE = LINK_BASE
    try:
        yield server
    finally:
        server.stop()


@dataclass
class JobRun:
    func: str
    args: tuple
    result: Any = None
    error: Exception | None = None


def run_jobs() -> list[JobRun]:
    """Run every queued job as a worker would (and the jobs they enqueue), in order.

    A job that raises is acknowledged as failed, as the cluster does (ack_failures).
    """
    runs: list[JobRun] = []
    while (queued := OrmQ.objects.order_by("id").first()) is not None:
        task = SignedPackage.loads(queued.payload)
        queued.delete()
        func = task["func"]
        run = JobRun(func=func if isinstance(func, str) else func.__qualname__, args=task["args"])
        try:
            run.result = (import_string(func) if isinstance(func, str) else func)(
                *task["args"], **task["kwargs"]
            )
        except Exception as error:
            run.error = error
        runs.append(run)
    return runs


@pytest.fixture
def record_event():
    """record_event(agent, type, **data): the event, in a transaction as a change would."""

    def record(agent: Agent, type: str, **data: Any) -> Event:
        with transaction.atomic():
            return event_record(agent=agent, type=type, data=data)

    return record
