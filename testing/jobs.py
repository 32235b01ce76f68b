"""Looking into django-q2's queue from tests."""

from __future__ import annotations

from django_q.models import OrmQ


def queued_dispatches() -> list[str]:
    """Event ids of the event_dispatch jobs waiting in the queue, oldest first."""
    tasks = [job.task for job in OrmQ.objects.order_by("id")]
    return [task["args"][0] for task in tasks if task["func"] == "events.tasks.event_dispatch"]
