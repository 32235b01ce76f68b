from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Agent


class ApiKey(models.Model):
    """An agent's API key. Only its SHA-256 hash and a short non-secret prefix are stored.

    Revocation is final: a revoked key never authenticates again.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, db_index=True)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set when the key was rotated with an overlap: it works until then. A key without
    # one is its agent's current key (the only one that may rotate).
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="apikey_agent_idx")]
        permissions = [("revoke_apikey", "Can revoke an API key")]

    def __str__(self) -> str:
        return f"{self.prefix}…"

    @property
    def is_working(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )

    @property
    def is_current(self) -> bool:
        return self.is_working and self.expires_at is None


class KeyEvent(models.Model):
    """Audit row written in the same transaction as each key change."""

    class Kind(models.TextChoices):
        ISSUED = "issued", "Issued"
        ROTATED = "rotated", "Rotated"
        REVOKED = "revoked", "Revoked"

    # Audit rows are never deleted along with what they describe.
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="key_events")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Staff user who made the change; empty when the agent did.",
    )
    reason = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="keyevent_agent_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.api_key.prefix}…"
