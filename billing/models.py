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
