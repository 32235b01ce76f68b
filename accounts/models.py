import uuid

from django.conf import settings
from django.db import models


class Tier(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"


class Agent(models.Model):
    """An AI agent with an account: its profile, tier and lifetime metered calls.

    DRF puts the authenticated Agent on ``request.user``, hence the two
    ``is_authenticated``/``is_anonymous`` attributes.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent_name = models.CharField(max_length=100)
    owner_identifier = models.CharField(max_length=255)
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.FREE)
    # Only ever changed by single atomic UPDATE statements (see billing.metering.services).
    calls_total = models.PositiveBigIntegerField(default=0)
    last_call_at = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set by accounts.services.agent_delete; name and owner are then a tombstone.
    deleted_at = models.DateTimeField(null=True, blank=True)

    is_authenticated = True
    is_anonymous = False

    class Meta:
        constraints = [
            # Among live agents only: a deleted agent's pair is its tombstone,
            # "deleted-<id>" twice, which anyone may register (its id is no secret).
            models.UniqueConstraint(
                fields=["agent_name", "owner_identifier"],
                condition=models.Q(deleted_at__isnull=True),
                name="agent_name_owner_unique_live",
            ),
        ]
        indexes = [
            # The admin's over-limit filter and usage sort: tier = 'free' AND calls_total >= N.
            models.Index(fields=["tier", "calls_total"], name="agent_tier_calls_idx"),
            # Sorting by usage: the admin orders by (calls_total, id), and with only
            # calls_total indexed, ties (every agent at 0 calls) would be sorted in full.
            models.Index(fields=["calls_total", "id"], name="agent_calls_id_idx"),
            models.Index(fields=["owner_identifier"], name="agent_owner_idx"),
        ]
        # Staff support actions (accounts/admin.py); viewing needs only view_agent.
        permissions = [
            ("reissue_key", "Can reissue an agent's API key"),
            ("change_tier", "Can grant or remove Pro by hand"),
            ("reset_usage", "Can reset an agent's usage counter"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_name} ({self.owner_identifier})"


class AgentEvent(models.Model):
    """Audit trail for changes to an agent that are not key changes."""

    class Kind(models.TextChoices):
        REGISTERED = "registered", "Registered"
        TIER_CHANGED = "tier_changed", "Tier changed"
        USAGE_RESET = "usage_reset", "Usage reset"
        PAYMENT_METHOD_SET = "payment_method_set", "Payment method set"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        SUBSCRIPTION_ENDED = "subscription_ended", "Subscription ended"
        SUBSCRIPTION_CANCEL_REQUESTED = "subscription_cancel_requested", "Cancellation requested"
        SUBSCRIPTION_RESUMED = "subscription_resumed", "Subscription resumed"
        DELETED = "deleted", "Deleted"

    # Audit rows are never deleted along with the agent (deletion is a tombstone).
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Staff user who made the change; empty when the agent or Stripe did.",
    )
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="agentevent_agent_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"
