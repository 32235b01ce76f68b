"""Read-only list of events for staff: what each agent's owner was (or will be) told."""

from __future__ import annotations

from django.contrib import admin

from events.models import Event
from lithtrix.core.admin import LargeTableAdmin, search_by_agent_id


@admin.register(Event)
class EventAdmin(LargeTableAdmin):
    list_display = ("created_at", "agent", "type", "dispatched")
    list_filter = ("type",)
    list_select_related = ("agent",)
    ordering = ("-created_at", "-id")
    sortable_by = ()
    fields = ("id", "agent", "type", "data", "created_at", "dispatched_at")
    search_fields = ("agent__id",)
    search_help_text = "Agent id (the whole UUID)."

    def get_search_results(self, request, queryset, search_term):
        return search_by_agent_id(queryset, search_term)

    @admin.display(description="dispatched", boolean=True)
    def dispatched(self, event: Event) -> bool:
        return event.dispatched_at is not None
