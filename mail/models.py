"""Owner e-mail: each message and its delivery, the daily count, unsubscribed addresses.

The daily count and the unsubscribe list outlive an agent's deletion, which erases
its owner's address; they hold the address as a SHA-256 digest (address_digest), so
they can answer "this address?" without keeping a readable list of addresses.
"""

from __future__ import annotations

import hashlib

from django.db import models
from django.utils import timezone


def address_digest(address: str) -> str:
    """The key the daily count and the unsubscribe list use (case-insensitive)."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


class OwnerEmail(models.Model):
    """One event's message to one owner address, and how its delivery went.

    Created in the transaction of the change (the address is read then: deletion
    erases it); sent by the job mail.tasks.owner_email_send, retried with backoff.
    ``status`` leaves ``pending`` once; ``sent`` is the marker that stops a resend.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        # Not sent, and never will be:
        UNSUBSCRIBED = "unsubscribed"
        OVER_DAILY_LIMIT = "over_daily_limit"
        REFUSED = "refused", "refused by the mail server"

    event = models.ForeignKey("events.Event", on_delete=models.PROTECT, related_name="+")
    # Empty once the message is done with and its agent deleted (the address is erased).
    address = models.CharField(max_length=254)
    # As it was when the event happened (deletion replaces it with a tombstone);
    # empty, like the address, once the message is done with and its agent deleted.
    agent_name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # The mail server's answer or the connection error; never credentials.
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker sending it holds it until then (a crashed one's claim runs out).
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "address"], name="owner_email_event_address")
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="owner_email_created_idx"),
            # The retry sweep's lookup.
            models.Index(
                fields=["next_attempt_at"],
                name="owner_email_pending_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} to {self.address}"


class OwnerEmailDailyCount(models.Model):
    """Owner e-mails admitted for one address on one UTC day (the daily cap)."""

    address_digest = models.CharField(max_length=64)
    day = models.DateField()
    # Only ever changed by one conditional UPDATE (mail.services), never read-modify-write.
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["address_digest", "day"], name="owner_email_day")
        ]

    def __str__(self) -> str:
        return f"{self.count} on {self.day}"


class EmailSuppression(models.Model):
    """An address that unsubscribed: it gets no owner e-mail but key.leaked."""

    address_digest = models.CharField(max_length=64, primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.address_digest
