import secrets

from django.db import models

from accounts.models import Agent


def event_id_new() -> str:
    return f"evt_{secrets.token_hex(16)}"


class Event(models.Model):
    """Something that happened to an agent that its owner (and later the agent) is told.

    Recorded in the same transaction as the change that causes it (events.services);
    delivered later by the job system, at least once, receivers deduplicating by ``id``.
    ``data`` is small and never holds a key or a card detail.
    """

    class Type(models.TextChoices):
        KEY_LEAKED = "key.leaked"
        KEY_REVOKED_BY_SUPPORT = "key.revoked_by_support"
        KEY_REISSUED_BY_SUPPORT = "key.reissued_by_support"
        USAGE_NEAR_LIMIT = "usage.near_limit"
        USAGE_LIMIT_REACHED = "usage.limit_reached"
        BILLING_TIER_CHANGED = "billing.tier_changed"
        BILLING_CANCEL_SCHEDULED = "billing.cancel_scheduled"
        BILLING_PAYMENT_FAILED = "billing.payment_failed"
        AGENT_DELETED = "agent.deleted"

    # Stable across every retry and every channel (the Standard Webhooks `webhook-id`).
    id = models.CharField(primary_key=True, max_length=40, default=event_id_new, editable=False)
    # Agents are tombstoned, not deleted; should one ever be, its events stay.
    agent = models.ForeignKey(Agent, null=True, on_delete=models.SET_NULL, related_name="+")
    type = models.CharField(max_length=32, choices=Type.choices)
    data = models.JSONField(default=dict, blank=True)
    # The staff list's order.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set by events.tasks.event_dispatch once every channel has its delivery.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["agent", "-created_at"], name="event_agent_idx"),
            # The sweeper's lookup: events never dispatched (a crash after commit).
            models.Index(
                fields=["created_at"],
                name="event_undispatched_idx",
                condition=models.Q(dispatched_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
