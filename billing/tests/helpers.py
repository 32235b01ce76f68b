"""Assertions and set-up shared by the metering tests."""

from __future__ import annotations

from testing.assertions import assert_envelope
from testing.factories import set_calls_total

__all__ = ["assert_envelope", "queued_jobs", "rate_headers", "run_jobs", "set_calls_total"]


def rate_headers(response) -> tuple[int, int, int]:
    """(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset) as ints; fails if one is missing."""
    return (
        int(response["RateLimit-Limit"]),
        int(response["RateLimit-Remaining"]),
        int(response["RateLimit-Reset"]),
    )


def run_jobs(*, due_schedules: bool = False) -> list[tuple[str, object]]:
    """Run the queued jobs (django-q's ORM queue) here, as a worker would, until none is left.

    ``due_schedules``: first enqueue the one-off schedules (retries) as if their time
    had come, as django-q's scheduler does. Returns (func, result) per job run.
    """
    import ast

    from django.utils.module_loading import import_string
    from django_q.models import OrmQ, Schedule
    from django_q.tasks import async_task

    if due_schedules:
        for due in Schedule.objects.filter(schedule_type=Schedule.ONCE).order_by("id"):
            args = ast.literal_eval(due.args) if due.args else ()
            kwargs = ast.literal_eval(due.kwargs) if due.kwargs else {}
            async_task(due.func, *(args if isinstance(args, tuple) else (args,)), **kwargs)
            due.delete()
    ran: list[tuple[str, object]] = []
    while queued := list(OrmQ.objects.order_by("id")):
        for row in queued:
            task = row.task
            row.delete()
            func = task["func"]
            fn = import_string(func) if isinstance(func, str) else func
            ran.append((str(func), fn(*task["args"], **task["kwargs"])))
    return ran


def queued_jobs(func: str) -> int:
    """How many jobs of ``func`` (a dotted path) wait in django-q's ORM queue."""
    from django_q.models import OrmQ

    return sum(1 for row in OrmQ.objects.all() if row.task.get("func") == func)
