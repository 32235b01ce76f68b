import secrets

from django.db import models

from accounts.models import Agent


def delivery_id_new() -> str:
    return f"whd_{secrets.token_hex(12)}"


class WebhookEndpoint(models.Model):
    """An agent's one webhook URL and its signing secret (sealed: webhooks.secrets)."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="webhook")
    url = models.URLField(max_length=2000)
    # Fernet token of the "whsec_..." secret; never shown after the PUT that made it.
    secret_sealed = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set at the first failed attempt since the last success; cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True)
    # Set when it has failed for LITHTRIX_WEBHOOK_DISABLE_AFTER_DAYS; a PUT clears it.
    disabled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"<WebhookEndpoint agent={self.agent_id} url={self.url!r}>"


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint: every attempt reuses the event's id."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=32, default=delivery_id_new, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey("events.Event", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One delivery per event and endpoint, however often dispatch runs.
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once"),
        ]
        indexes = [models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_recent")]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"
