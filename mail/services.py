"""Owner e-mail: record, enqueue, send (with the daily cap and unsubscribes), unsubscribe.

The way of one message: ``owner_email_record`` in the transaction of the change (the
event's own), ``owner_email_enqueue`` in the event's dispatch, then the job
``mail.tasks.owner_email_send``, which calls ``owner_email_send``; failures are retried
with backoff by the periodic ``mail.tasks.owner_emails_retry``.
"""

from __future__ import annotations

import smtplib
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import cast
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from accounts.models import Agent
from events.jobs import backoff_seconds
from events.models import Event
from lithtrix.core.exceptions import ValidationError
from mail.models import EmailSuppression, OwnerEmail, OwnerEmailDailyCount, address_digest
from mail.selectors import is_unsubscribed

SEND_TASK = "mail.tasks.owner_email_send"

# Security notices: sent even to an address that unsubscribed, and never held back by
# the daily cap (a leaked key was revoked: the owner must learn it, whatever came first).
ALWAYS_SENT = frozenset({Event.Type.KEY_LEAKED})

SUBJECTS = {
    Event.Type.KEY_LEAKED: "Your agent's API key was found in public and revoked",
    Event.Type.KEY_REVOKED_BY_SUPPORT: "Support revoked your agent's API key",
    Event.Type.KEY_REISSUED_BY_SUPPORT: "Support issued your agent a new API key",
    Event.Type.USAGE_NEAR_LIMIT: "Your agent has used 80 % of its free calls",
    Event.Type.USAGE_LIMIT_REACHED: "Your agent has used all its free calls",
    Event.Type.BILLING_TIER_CHANGED: "Your agent's plan changed",
    Event.Type.BILLING_CANCEL_SCHEDULED: "Your agent's Pro plan will end",
    Event.Type.BILLING_PAYMENT_FAILED: "A payment for your agent failed",
    Event.Type.AGENT_DELETED: "Your agent was deleted",
}

# A first attempt is the dispatch's job; the sweep takes one over only if it has not
# run by then (its job was lost).
FIRST_ATTEMPT_GRACE = timedelta(minutes=5)

UNSUBSCRIBE_SALT = "mail.unsubscribe"


def is_email_address(owner_identifier: str) -> bool:
    try:
        validate_email(owner_identifier)
    except DjangoValidationError:
        return False
    return True


def owner_email_record(*, event: Event, agent: Agent) -> OwnerEmail | None:
    """The owner's message for ``event``, when the agent's owner is an e-mail address.

    Call in the transaction of the change (event_record does): the address and agent
    name are read now, before a deletion erases them. Nothing is sent yet.
    """
    if not is_email_address(agent.owner_identifier):
        return None
    return OwnerEmail.objects.create(
        event=event,
        address=agent.owner_identifier,
        agent_name=agent.agent_name,
        next_attempt_at=timezone.now(),
    )


def owner_email_enqueue(*, event: Event) -> int:
    """One send job per pending message of ``event``, in the caller's transaction.

    Called by the event's dispatch, which runs once per event. An event recorded
    without event_record (the metering statement writes its usage events in SQL) has
    no message yet: it gets one here, from the agent's owner as it is now. Returns
    the number of jobs.
    """
    if event.agent is not None and not OwnerEmail.objects.filter(event=event).exists():
        owner_email_record(event=event, agent=event.agent)
    ids = list(
        OwnerEmail.objects.filter(event=event, status=OwnerEmail.Status.PENDING).values_list(
            "pk", flat=True
        )
    )
    for pk in ids:
        async_task(SEND_TASK, pk, task_name=f"owner_email_send:{pk}")
    return len(ids)


def owner_emails_due_enqueue(*, limit: int = 500) -> int:
    """Enqueue a send job for each message whose retry is due (the periodic sweep)."""
    now = timezone.now()
    ids = list(
        OwnerEmail.objects.filter(status=OwnerEmail.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(Q(attempts__gt=0) | Q(created_at__lte=now - FIRST_ATTEMPT_GRACE))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        async_task(SEND_TASK, pk, task_name=f"owner_email_send:{pk}")
    return len(ids)


class OwnerEmailNotSent(Exception):
    """The mail server did not take the message; it is retried (the job fails)."""


def owner_email_send(*, owner_email_id: int) -> OwnerEmail.Status | None:
    """Send one owner e-mail, at most once under normal operation.

    A worker first claims the message (one conditional UPDATE: a second job for it
    finds nothing to do); the first claim also applies the unsubscribe list and
    counts the message against the address's daily cap, atomically. The mail server
    is called outside any transaction; ``sent`` is recorded right after it accepts.
    A crash between its acceptance and that record is the one case that sends twice.
    Raises OwnerEmailNotSent when the server failed: the message is retried later.
    Returns the message's new status (None: not this job's to send).
    """
    owner_email = _claim(owner_email_id)
    if owner_email is None:
        return None
    if owner_email.status == OwnerEmail.Status.PENDING:
        status = _deliver(owner_email)
    else:
        status = OwnerEmail.Status(owner_email.status)
    _erase_if_agent_deleted(owner_email)
    return status


def _deliver(owner_email: OwnerEmail) -> OwnerEmail.Status:
    try:
        owner_email_message(owner_email).send()
    except (smtplib.SMTPException, OSError) as error:
        status = _record_failure(owner_email, error)
        if status == OwnerEmail.Status.REFUSED:
            return status
        raise OwnerEmailNotSent(f"owner e-mail {owner_email.pk}: {describe(error)}") from None
    OwnerEmail.objects.filter(pk=owner_email.pk).update(
        status=OwnerEmail.Status.SENT, sent_at=timezone.now(), claimed_until=None, last_error=""
    )
    return OwnerEmail.Status.SENT


def _erase_if_agent_deleted(owner_email: OwnerEmail) -> None:
    """Agent deletion erases the agent's name and owner (accounts.services.agent_delete):
    a deleted agent's messages keep them only until they are done with."""
    agent = owner_email.event.agent
    if agent is not None and agent.deleted_at is not None:
        OwnerEmail.objects.filter(event__agent=agent).exclude(
            status=OwnerEmail.Status.PENDING
        ).update(address="", agent_name="")


def _claim(owner_email_id: int) -> OwnerEmail | None:
    now = timezone.now()
    # Longer than a job may run: a live worker never loses its claim.
    claim_until = now + timedelta(seconds=2 * cast(int, settings.Q_CLUSTER["timeout"]))
    with transaction.atomic():
        claimed = (
            OwnerEmail.objects.filter(
                pk=owner_email_id, status=OwnerEmail.Status.PENDING, next_attempt_at__lte=now
            )
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .update(attempts=F("attempts") + 1, claimed_until=claim_until)
        )
        if not claimed:
            return None
        owner_email = OwnerEmail.objects.select_related("event__agent").get(pk=owner_email_id)
        if owner_email.event.type in ALWAYS_SENT:
            return owner_email
        skip = None
        if is_unsubscribed(owner_email.address):
            skip = OwnerEmail.Status.UNSUBSCRIBED
        # Counted once, on the first attempt; retries of an admitted message are not.
        elif owner_email.attempts == 1 and not _daily_count_admit(owner_email.address, now):
            skip = OwnerEmail.Status.OVER_DAILY_LIMIT
        if skip is not None:
            OwnerEmail.objects.filter(pk=owner_email_id).update(status=skip, claimed_until=None)
            owner_email.status = skip
        return owner_email


def _daily_count_admit(address: str, now: datetime) -> bool:
    """Count one more message for ``address`` today (UTC) unless it has had its share.

    One conditional UPDATE: concurrent workers cannot push the count past the cap
    (PostgreSQL re-checks the condition on the row it locked).
    """
    digest, day = address_digest(address), now.date()
    OwnerEmailDailyCount.objects.bulk_create(
        [OwnerEmailDailyCount(address_digest=digest, day=day, count=0)], ignore_conflicts=True
    )
    return bool(
        OwnerEmailDailyCount.objects.filter(
            address_digest=digest, day=day, count__lt=settings.LITHTRIX_OWNER_EMAILS_PER_DAY
        ).update(count=F("count") + 1)
    )


def _record_failure(owner_email: OwnerEmail, error: Exception) -> OwnerEmail.Status:
    if _refused_for_good(error):
        status = OwnerEmail.Status.REFUSED
        next_attempt_at = owner_email.next_attempt_at
    else:
        status = OwnerEmail.Status.PENDING
        # The job system's doubling delays (1, 2, 4 ... minutes, at most an hour apart),
        # for as long as the server keeps failing: an outage delays mail, never drops it.
        delay = backoff_seconds(owner_email.attempts)
        next_attempt_at = timezone.now() + timedelta(seconds=delay)
    OwnerEmail.objects.filter(pk=owner_email.pk).update(
        status=status,
        last_error=describe(error)[:500],
        next_attempt_at=next_attempt_at,
        claimed_until=None,
    )
    return status


def _refused_for_good(error: Exception) -> bool:
    """The server refused the recipient with a permanent (5xx) answer: retrying cannot help.

    Anything else (connection refused, timeouts, 4xx, a refused login or sender) is
    an outage or a configuration to fix, and is retried.
    """
    return isinstance(error, smtplib.SMTPRecipientsRefused) and all(
        code >= 500 for code, _ in error.recipients.values()
    )


def describe(error: Exception) -> str:
    """An error for the staff console: the server's code and answer, never credentials."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = [f"{code} {_text(message)}" for code, message in error.recipients.values()]
        return f"{type(error).__name__}: {'; '.join(answers)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return type(error).__name__


def _text(message: bytes | str) -> str:
    return message.decode(errors="replace") if isinstance(message, bytes) else message


def owner_email_message(owner_email: OwnerEmail) -> EmailMultiAlternatives:
    """The message: plain text and HTML from the event type's templates, with RFC 8058's
    one-click unsubscribe headers. Never a key: events carry none."""
    event = owner_email.event
    subject = SUBJECTS[Event.Type(event.type)]
    url = unsubscribe_url(owner_email.address)
    context = {
        "subject": subject,
        "event": event,
        "data": event.data,
        "agent_id": event.agent_id,
        "agent_name": owner_email.agent_name,
        "address": owner_email.address,
        "unsubscribe_url": url,
        "always_sent": event.type in ALWAYS_SENT,
    }
    template = f"events/email/{event.type}"
    domain = parseaddr(settings.LITHTRIX_EMAIL_FROM)[1].rpartition("@")[2] or "localhost"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{template}.txt", context),
        from_email=settings.LITHTRIX_EMAIL_FROM,
        to=[owner_email.address],
        headers={
            # The same on a resend, so the receiving side can drop the duplicate.
            "Message-ID": f"<{event.pk}.{owner_email.pk}@{domain}>",
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            # RFC 3834: no auto-replies to it.
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message


def unsubscribe_url(address: str) -> str:
    """The one-click unsubscribe link for ``address``: a signed token naming it."""
    token = signing.dumps(address.strip().lower(), salt=UNSUBSCRIBE_SALT)
    path = reverse("unsubscribe")
    return f"{settings.LITHTRIX_EMAIL_LINK_BASE}{path}?{urlencode({'token': token})}"


def unsubscribe_token_address(token: str) -> str:
    """The address a token from ``unsubscribe_url`` names; ValidationError if forged."""
    try:
        address = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        raise ValidationError("The unsubscribe link is invalid.") from None
    if not isinstance(address, str):
        raise ValidationError("The unsubscribe link is invalid.")
    return address


def email_unsubscribe(*, address: str) -> None:
    """Stop every owner e-mail to ``address`` but key.leaked. Idempotent."""
    EmailSuppression.objects.bulk_create(
        [EmailSuppression(address_digest=address_digest(address))], ignore_conflicts=True
    )
