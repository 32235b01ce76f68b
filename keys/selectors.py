from __future__ import annotations

from keys.crypto import hash_key
from keys.models import ApiKey


def active_api_key_with_agent(*, key: str) -> ApiKey | None:
    """The unrevoked key matching ``key``, with its agent, in one indexed query."""
    try:
        return ApiKey.objects.select_related("agent").get(
            hashed_key=hash_key(key), revoked_at__isnull=True
        )
    except ApiKey.DoesNotExist:
        return None
