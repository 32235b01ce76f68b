"""Agent webhooks: set and remove the endpoint; create, attempt and resume deliveries.

Deliveries are rows with a due time; a job attempts one, and a periodic job
(webhooks.tasks.deliveries_resume) enqueues every delivery that is due, retries
and deliveries whose worker died mid-attempt alike. An attempt is claimed by one
conditional UPDATE, so two workers never attempt the same delivery at once, and no
transaction is open while the agent's server is called.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task
from standardwebhooks import Webhook

from accounts.models import Agent
from events.models import Event
from webhooks import client
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.secrets import secret_generate, secret_open, secret_seal

logger = logging.getLogger("webhooks.delivery")

ATTEMPT_TASK = "webhooks.tasks.delivery_attempt"
# The Standard Webhooks specification's suggested schedule: the delay before each
# retry (about 27 hours in all); the first attempt is immediate.
RETRY_DELAYS = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]
# Every attempt the schedule allows: the first and one after each delay.
ATTEMPTS_MAX = len(RETRY_DELAYS) + 1
# A claimed attempt not finished by then (its worker died) is due again. Far beyond
# the attempt's deadline (name resolution and the record come on top of it), and beyond
# the job system's timeout (60 s), so no attempt still running is claimed a second time.
ATTEMPT_LEASE = timedelta(minutes=2)


@transaction.atomic
def webhook_set(*, agent: Agent, url: str) -> tuple[WebhookEndpoint, str]:
    """Set the agent's webhook URL with a new signing secret; returns it in clear once.

    Setting it again rotates the secret and re-enables a disabled endpoint.
    """
    secret = secret_generate()
    endpoint, _ = WebhookEndpoint.objects.update_or_create(
        agent=agent,
        defaults={
            "url": url,
            "secret_sealed": secret_seal(secret),
            "failing_since": None,
            "disabled_at": None,
        },
    )
    return endpoint, secret


@transaction.atomic
def webhook_delete(*, agent: Agent) -> bool:
    """Remove the agent's endpoint and its deliveries; False if it had none.

    The endpoint row is locked first, as recording an attempt locks it (then its
    delivery): the cascade deletes the deliveries before the endpoint, and in that
    order alone the two could deadlock on PostgreSQL.
    """
    locked = WebhookEndpoint.objects.select_for_update().filter(agent=agent)
    if locked.values_list("pk", flat=True).first() is None:
        return False
    WebhookEndpoint.objects.filter(agent=agent).delete()
    return True


def webhook_deliveries_create(*, event: Event) -> WebhookDelivery | None:
    """The event's delivery to its agent's endpoint, if it has a working one.

    Runs in the caller's transaction (the event's dispatch); the first attempt is
    enqueued in it too. Idempotent per event.
    """
    if event.agent_id is None:
        return None
    endpoint = WebhookEndpoint.objects.filter(
        agent_id=event.agent_id, disabled_at__isnull=True
    ).first()
    if endpoint is None:
        return None
    delivery, created = WebhookDelivery.objects.get_or_create(
        endpoint=endpoint, event=event, defaults={"next_attempt_at": timezone.now()}
    )
    if created:
        async_task(ATTEMPT_TASK, delivery.id, task_name=f"webhook:{delivery.id}")
    return delivery


def delivery_body(event: Event) -> str:
    payload = {
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": {"agent_id": str(event.agent_id), **event.data},
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def delivery_headers(*, secret: str, event: Event, body: str, now: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "Lithtrix-Webhooks/1",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=event.id, timestamp=now, data=body),
    }


def delivery_attempt(*, delivery_id: str) -> WebhookDelivery | None:
    """Attempt one delivery if it is due; records the outcome and the next try.

    Returns None when there was nothing to do (not due, done, claimed by another
    worker, endpoint gone or disabled).
    """
    now = timezone.now()
    due = WebhookDelivery.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        id=delivery_id,
        status=WebhookDelivery.Status.PENDING,
        endpoint__disabled_at__isnull=True,
    )
    claimed = due.filter(attempts__lt=ATTEMPTS_MAX).update(
        attempts=F("attempts") + 1, next_attempt_at=now + ATTEMPT_LEASE, updated_at=now
    )
    if not claimed:
        if due.filter(attempts__gte=ATTEMPTS_MAX).exists():
            # Every attempt was claimed and the last one never recorded (its worker was
            # killed): the delivery has failed, as after a last failed attempt.
            interrupted = client.Outcome(
                succeeded=False, status_code=None, error="attempt interrupted"
            )
            return _attempt_record(delivery_id=delivery_id, outcome=interrupted, now=now)
        return None
    outcome: client.Outcome | None
    try:
        outcome = _attempt_send(delivery_id=delivery_id, now=now)
    except Exception as error:
        # A fault on our side is a failed attempt like any other: retried on the
        # schedule and counted against the endpoint, never a claim left unrecorded
        # (due again at every lease's end, without end). Only the exception's class is
        # recorded: its message may quote the URL, a header or the secret.
        logger.exception("webhook delivery %s: the attempt raised", delivery_id)
        outcome = client.Outcome(succeeded=False, status_code=None, error=type(error).__name__)
    if outcome is None:
        return None
    return _attempt_record(delivery_id=delivery_id, outcome=outcome, now=timezone.now())


def _attempt_send(*, delivery_id: str, now: datetime) -> client.Outcome | None:
    delivery = (
        WebhookDelivery.objects.select_related("endpoint", "event").filter(id=delivery_id).first()
    )
    if delivery is None:  # removed with its endpoint since the claim
        return None
    endpoint = delivery.endpoint
    body = delivery_body(delivery.event)
    headers = delivery_headers(
        secret=secret_open(endpoint.secret_sealed), event=delivery.event, body=body, now=now
    )
    return client.post(endpoint.url, body=body.encode(), headers=headers)


@transaction.atomic
def _attempt_record(
    *, delivery_id: str, outcome: client.Outcome, now: datetime
) -> WebhookDelivery | None:
    endpoint_ids = WebhookDelivery.objects.filter(id=delivery_id).values("endpoint_id")
    endpoint = WebhookEndpoint.objects.select_for_update().filter(id__in=endpoint_ids).first()
    delivery = WebhookDelivery.objects.select_for_update().filter(id=delivery_id).first()
    if endpoint is None or delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        # Removed with its endpoint during the attempt (the agent's DELETE /v1/webhook),
        # recorded by another worker, or failed with its endpoint's disabling meanwhile.
        return None
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error[:200]
    if outcome.succeeded:
        delivery.status = WebhookDelivery.Status.SUCCEEDED
        delivery.next_attempt_at = None
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
            endpoint.save(update_fields=["failing_since", "updated_at"])
    else:
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        disable_after = timedelta(days=settings.LITHTRIX_WEBHOOK_DISABLE_AFTER_DAYS)
        if now - endpoint.failing_since >= disable_after:
            endpoint.disabled_at = now
            WebhookDelivery.objects.filter(
                endpoint=endpoint, status=WebhookDelivery.Status.PENDING
            ).exclude(id=delivery.id).update(
                status=WebhookDelivery.Status.FAILED, next_attempt_at=None, updated_at=now
            )
        endpoint.save(update_fields=["failing_since", "disabled_at", "updated_at"])
        retry = delivery.attempts - 1
        if endpoint.disabled_at is None and retry < len(RETRY_DELAYS):
            delivery.next_attempt_at = now + RETRY_DELAYS[retry]
        else:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
    delivery.save(
        update_fields=["status", "last_status_code", "last_error", "next_attempt_at", "updated_at"]
    )
    return delivery


def deliveries_resume() -> int:
    """Enqueue every pending delivery that is due (retries, and attempts whose worker
    died after claiming them); returns how many."""
    now = timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__disabled_at__isnull=True,
        ).values_list("id", flat=True)[:1000]
    )
    for delivery_id in due:
        async_task(ATTEMPT_TASK, delivery_id, task_name=f"webhook:{delivery_id}")
    return len(due)
