from django.db import transaction
from django_q.tasks import async_task

from accounts.models import Agent
from events.models import Event
from mail.services import owner_email_record

DISPATCH_TASK = "events.tasks.event_dispatch"


def event_record(*, agent: Agent, type: str, data: dict) -> Event:
    """Record an event and enqueue its dispatch, both in the caller's transaction.

    Must be called inside the transaction of the change that causes the event: the
    change, its event and its dispatch job commit or roll back together.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_record must run inside the transaction of its change")
    event = Event.objects.create(agent=agent, type=Event.Type(type), data=data)
    # The owner's address is read now: a deletion erases it before the dispatch runs.
    owner_email_record(event=event, agent=agent)
    event_dispatch_enqueue(event_id=event.id)
    return event


def event_dispatch_enqueue(*, event_id: str) -> None:
    """Enqueue the dispatch of an event (in the caller's transaction, if any)."""
    async_task(DISPATCH_TASK, event_id, task_name=f"event_dispatch:{event_id}")
