"""Read-only admin for API keys and their audit trail. A key's hash is never shown."""

from __future__ import annotations

from django.contrib import admin, messages

from keys.crypto import DISPLAY_PREFIX_LENGTH, KEY_PREFIX
from keys.models import ApiKey, KeyEvent
from keys.services import api_key_revoke
from lithtrix.core.admin import BULK_LIMIT, LargeTableAdmin, parse_uuid, search_by_agent_id
from lithtrix.core.http import client_ip


@admin.register(ApiKey)
class ApiKeyAdmin(LargeTableAdmin):
    list_display = ("prefix", "agent", "created_at", "revoked_at", "working")
    list_select_related = ("agent",)
    ordering = ("-id",)
    sortable_by = ()
    # hashed_key is left out of every page on purpose.
    fields = ("prefix", "agent", "created_at", "revoked_at")
    search_fields = ("prefix",)
    search_help_text = f"Key prefix ({KEY_PREFIX}…) or agent id (the whole UUID)."
    actions = ("revoke_keys",)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term.startswith(KEY_PREFIX):
            return queryset.filter(prefix__startswith=term[:DISPLAY_PREFIX_LENGTH]), False
        if parse_uuid(term) is None and term:
            return queryset.none(), False
        return search_by_agent_id(queryset, term)

    @admin.display(description="working", boolean=True)
    def working(self, api_key: ApiKey) -> bool:
        return api_key.is_working

    def has_revoke_apikey_permission(self, request) -> bool:
        return request.user.has_perm("keys.revoke_apikey")

    @admin.action(description="Revoke the selected keys", permissions=["revoke_apikey"])
    def revoke_keys(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True)[:BULK_LIMIT]:
            revoked += api_key_revoke(
                api_key=api_key,
                actor=request.user,
                reason="revoked from the admin's key list",
                ip=client_ip(request),
            )
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


@admin.register(KeyEvent)
class KeyEventAdmin(LargeTableAdmin):
    list_display = ("created_at", "agent", "api_key", "kind", "by", "reason")
    list_filter = ("kind",)
    list_select_related = ("agent", "api_key", "actor")
    ordering = ("-id",)
    sortable_by = ()
    fields = ("agent", "api_key", "kind", "by", "actor", "reason", "ip", "created_at")
    readonly_fields = ("by",)
    search_fields = ("agent__id",)
    search_help_text = "Agent id (the whole UUID)."

    def get_search_results(self, request, queryset, search_term):
        return search_by_agent_id(queryset, search_term)

    @admin.display(description="by")
    def by(self, event: KeyEvent) -> str:
        return key_event_by(event)


def key_event_by(event: KeyEvent) -> str:
    """Who acted: the staff user recorded as actor, else the agent (through the API)."""
    return f"{event.actor} (staff)" if event.actor_id is not None else "the agent"
