from django.db import models

from accounts.models import Agent


class DailyUsage(models.Model):
    """Metered calls of one agent on one UTC day; upserted with each metered call,
    and with each call refused at the cap (402), so support sees an agent hammering it."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="daily_usage")
    date = models.DateField()
    calls = models.PositiveBigIntegerField(default=0)
    # A default in the database too: meter_call's raw SQL inserts rows without it.
    refused = models.PositiveBigIntegerField(default=0, db_default=0)

    class Meta:
        verbose_name_plural = "daily usage"
        ordering = ["-date"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "date"], name="dailyusage_agent_date_unique"),
        ]
        indexes = [models.Index(fields=["date"], name="dailyusage_date_idx")]

    def __str__(self) -> str:
        return f"{self.date}: {self.calls}"


class BillingLease(models.Model):
    """Who runs a billing action (setup, cancel, deletion) of one agent right now, or
    holds one of the deployment's Stripe call slots (fixed ids, never an agent's).

    Taken and released by billing/payments/locks.py, one autocommit statement each;
    a row whose ``expires_at`` has passed is free to take over. No foreign key: the
    lease never touches (or locks) the agent's row, and outlives nothing but itself.
    """

    agent_id = models.UUIDField(primary_key=True)
    # Random per acquisition: a release deletes the row only while it is still ours.
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.agent_id} until {self.expires_at}"


class StripeEventReceipt(models.Model):
    """One Stripe event, stored when its signed webhook arrives and applied by a job.

    Keyed by Stripe's event id: Stripe delivers at least once, a replay finds the
    row and changes nothing (billing/payments/stripe_events.py).
    """

    id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=255)
    # The verified event as Stripe sent it (objects, ids and amounts; never a card number).
    body = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [models.Index(fields=["received_at"], name="stripeevent_received_idx")]

    def __str__(self) -> str:
        return f"{self.id} ({self.type})"
