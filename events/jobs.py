"""The job system's two additions to django-q2: retries with backoff, periodic jobs.

django-q2 hands a job out again only when its worker dies (after Q_CLUSTER["retry"]
seconds); a job that raises is simply failed. ``retry_with_backoff`` makes a raising
job try again later, on a doubling delay, by scheduling its next try as a one-off
django-q2 Schedule; its last failure is left to django-q2, whose failed tasks are the
dead letter (the admin's "Failed tasks", with a resubmit action).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

logger = logging.getLogger(__name__)

# Periodic jobs' Schedule rows are named so; the sync owns these and no others.
PERIODIC_PREFIX = "periodic:"


def backoff_seconds(attempt: int) -> int:
    """The delay after failed try number ``attempt`` (1-based): doubling, capped."""
    delay = settings.LITHTRIX_JOB_BACKOFF_SECONDS * 2 ** (attempt - 1)
    return int(min(delay, settings.LITHTRIX_JOB_BACKOFF_MAX_SECONDS))


def retry_with_backoff(func: Callable[..., Any]) -> Callable[..., Any]:
    """Make a job try again with backoff when it raises, LITHTRIX_JOB_TRIES times in all.

    The job gets an ``attempt`` keyword (1 on the first try) it does not see. The job
    must be idempotent: at-least-once delivery runs it again after a crash anyway.
    """
    path = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def job(*args: Any, attempt: int = 1, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            if attempt >= settings.LITHTRIX_JOB_TRIES:
                # django-q2 records it as a failed task: the dead letter.
                raise
            delay = backoff_seconds(attempt)
            logger.warning(
                "job %s failed (try %d of %d); trying again in %d s",
                path,
                attempt,
                settings.LITHTRIX_JOB_TRIES,
                delay,
                exc_info=True,
            )
            schedule(
                path,
                *args,
                attempt=attempt + 1,
                schedule_type=Schedule.ONCE,
                next_run=timezone.now() + dt.timedelta(seconds=delay),
                **kwargs,
            )
            return f"failed try {attempt}; next in {delay} s"

    return job


def periodic_jobs_sync(**_: Any) -> None:
    """Make django-q2's Schedule table hold exactly LITHTRIX_PERIODIC_JOBS.

    Created or updated by name (a changed interval keeps the next run already
    planned); periodic schedules no longer listed are deleted. Other schedules (the
    retries above, any made by hand) are left alone.
    """
    declared = {
        PERIODIC_PREFIX + name: job for name, job in settings.LITHTRIX_PERIODIC_JOBS.items()
    }
    for name, job in declared.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": job["func"],
                "schedule_type": Schedule.MINUTES,
                "minutes": job["minutes"],
                "repeats": -1,
            },
        )
    Schedule.objects.filter(name__startswith=PERIODIC_PREFIX).exclude(name__in=declared).delete()
