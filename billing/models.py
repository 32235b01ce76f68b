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
    """Who runs a billing action (setup, cancel, deletion) of one agent right now.

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
