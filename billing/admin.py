"""Read-only admin for metered usage per agent and day."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import LargeTableAdmin, search_by_agent_id
from billing.models import DailyUsage


@admin.register(DailyUsage)
class DailyUsageAdmin(LargeTableAdmin):
    list_display = ("date", "agent", "calls")
    list_select_related = ("agent",)
    ordering = ("-date", "-id")
    sortable_by = ()
    fields = ("agent", "date", "calls")
    search_fields = ("agent__id",)
    search_help_text = "Agent id (the whole UUID)."

    def get_search_results(self, request, queryset, search_term):
        return search_by_agent_id(queryset, search_term)
