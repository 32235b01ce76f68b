from django.db import models


class IdempotencyRecord(models.Model):
    """One Idempotency-Key's request and, once it finished, its answer.

    Nothing here gives back a key or an answer without the Idempotency-Key itself:
    ``key_hash`` is an HMAC of it under a secret derived from SECRET_KEY, and
    ``response`` is AES-GCM ciphertext under a key derived (HKDF) from the
    Idempotency-Key and SECRET_KEY (see idempotency.crypto).
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    # Whose key it is: "agent:<id>", or "ip:<address>" for register (no agent yet).
    # One caller's key never binds another's.
    namespace = models.CharField(max_length=64, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    # HMAC of method, path, credential and body: a different request under the same key.
    fingerprint = models.CharField(max_length=64, editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField()
    # In progress: when a crashed request's claim may be taken over; completed: end of replay.
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "idempotency record"
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "key_hash"], name="idempotency_namespace_key_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_state_display()} ({self.key_hash[:8]}…)"
