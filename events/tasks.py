"""Jobs run by the django-q2 workers (lithtrix/settings/jobs.py)."""

from __future__ import annotations

import datetime as dt
import inspect
import logging

from django.db import transaction
from django.utils import timezone

from events.jobs import retry_with_backoff
from events.models import Event
from mail.services import owner_email_enqueue
from webhooks.services import webhook_deliveries_create

# An event older than this without dispatched_at lost its job (see event_sweep); a
# younger one may still be waiting in the queue.
SWEEP_AFTER = dt.timedelta(minutes=10)
SWEEP_BATCH = 500

logger = logging.getLogger(__name__)


@retry_with_backoff
def event_dispatch(event_id: str) -> None:
    """Fan an event out to its channels, once per event id however often the job runs.

    Delivery is at least once (a worker killed mid-job gets its job handed out again),
    so the event row is locked and ``dispatched_at`` checked and set in one transaction.
    """
    with transaction.atomic():
        event = Event.objects.select_for_update().filter(id=event_id).first()
        if event is None or event.dispatched_at is not None:
            return
        # A deleted agent's endpoint hears of what happened before the deletion and
        # of the deletion, nothing after (owner e-mail, for its part, finds only the
        # tombstone where the address was once the deletion is committed).
        deleted_at = event.agent.deleted_at if event.agent is not None else None
        after = deleted_at is not None and event.created_at > deleted_at
        if not after or event.type == Event.Type.AGENT_DELETED:
            webhook_deliveries_create(event=event)
        owner_email_enqueue(event=event)
        event.dispatched_at = timezone.now()
        event.save(update_fields=["dispatched_at"])
    logger.info("event %s (%s) dispatched", event.id, event.type)


def event_sweep() -> int:
    """Dispatch events left undispatched; returns how many were dispatched.

    The metering statement records its events in SQL and enqueues their dispatch
    right after its commit: a crash in between leaves an event with no job, picked
    up here. Dispatched here and now, not enqueued, so an event whose dispatch keeps
    failing does not gain another retry chain at every sweep.
    """
    stale = Event.objects.filter(
        dispatched_at__isnull=True, created_at__lt=timezone.now() - SWEEP_AFTER
    ).order_by("created_at")
    dispatched = 0
    for event_id in stale.values_list("id", flat=True)[:SWEEP_BATCH]:
        try:
            # The job's own body, without its retries: the next sweep is the retry.
            inspect.unwrap(event_dispatch)(event_id)
        except Exception:
            logger.exception("event_sweep: dispatching %s failed", event_id)
        else:
            dispatched += 1
    return dispatched
