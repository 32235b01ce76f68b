"""The agent audit trail's list, and who acted on each of its rows."""

from __future__ import annotations

from django.contrib import admin

from accounts.models import AgentEvent
from lithtrix.core.admin import LargeTableAdmin, search_by_agent_id


def agent_event_by(event: AgentEvent) -> str:
    """Who acted: a staff user, Stripe (by event id) or the agent itself.

    Staff actions carry their user (actor); Stripe's webhooks record the event id
    they applied; everything else an agent did through the API.
    """
    if event.actor_id is not None:
        return f"{event.actor} (staff)"
    data = event.data if isinstance(event.data, dict) else {}
    if data.get("event_id"):
        return f"Stripe, event {data['event_id']}"
    if data.get("source") == "admin":
        return "staff (user since deleted)"
    return "the agent"


@admin.register(AgentEvent)
class AgentEventAdmin(LargeTableAdmin):
    list_display = ("created_at", "agent", "kind", "by", "reason")
    list_filter = ("kind",)
    list_select_related = ("agent", "actor")
    # -id follows creation order and is the primary key index: no sort of the table.
    ordering = ("-id",)
    sortable_by = ()
    search_fields = ("agent__id",)
    search_help_text = "Agent id (the whole UUID)."
    fields = ("agent", "kind", "by", "actor", "reason", "data", "ip", "created_at")
    readonly_fields = ("by",)

    def get_search_results(self, request, queryset, search_term):
        return search_by_agent_id(queryset, search_term)

    @admin.display(description="by")
    def by(self, event: AgentEvent) -> str:
        return agent_event_by(event)
