"""Jobs run by the django-q2 workers (lithtrix/settings/jobs.py)."""

from django.db import transaction
from django.utils import timezone

from events.models import Event


def event_dispatch(event_id: str) -> None:
    """Fan an event out to its channels, once per event id however often the job runs.

    Delivery is at least once (a worker killed mid-job gets its job handed out again),
    so the event row is locked and ``dispatched_at`` checked and set in one transaction.
    """
    with transaction.atomic():
        event = Event.objects.select_for_update().filter(id=event_id).first()
        if event is None or event.dispatched_at is not None:
            return
        event.dispatched_at = timezone.now()
        event.save(update_fields=["dispatched_at"])
