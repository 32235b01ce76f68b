"""Jobs run by the django-q2 workers (lithtrix/settings/jobs.py)."""

from mail.services import owner_email_send as _send
from mail.services import owner_emails_due_enqueue


def owner_email_send(owner_email_id: int) -> str | None:
    """Send one owner e-mail (enqueued by the event's dispatch or the retry sweep).

    Fails (OwnerEmailNotSent) while the mail server does; the sweep retries it.
    """
    status = _send(owner_email_id=owner_email_id)
    return status.value if status is not None else None


def owner_emails_retry() -> int:
    """Periodic: enqueue the owner e-mails whose retry is due."""
    return owner_emails_due_enqueue()
