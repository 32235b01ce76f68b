"""Read-only staff pages: each owner e-mail's delivery, and the unsubscribed addresses."""

from __future__ import annotations

from django.contrib import admin

from lithtrix.core.admin import LargeTableAdmin
from mail.models import EmailSuppression, OwnerEmail, address_digest


@admin.register(OwnerEmail)
class OwnerEmailAdmin(LargeTableAdmin):
    list_display = ("created_at", "event_type", "address", "status", "attempts", "last_error")
    list_filter = ("status",)
    list_select_related = ("event",)
    ordering = ("-created_at", "-id")
    sortable_by = ()
    fields = (
        "event",
        "event_type",
        "address",
        "agent_name",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "created_at",
        "sent_at",
    )
    search_fields = ("address",)
    search_help_text = "The whole owner address, or an event id (evt_…)."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term.startswith("evt_"):
            return queryset.filter(event_id=term), False
        return (queryset.filter(address=term) if term else queryset), False

    @admin.display(description="event")
    def event_type(self, owner_email: OwnerEmail) -> str:
        return owner_email.event.type


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(LargeTableAdmin):
    list_display = ("address_digest", "created_at")
    ordering = ("-created_at",)
    sortable_by = ()
    search_fields = ("address_digest",)
    search_help_text = "The whole address (kept as its SHA-256 digest only)."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        return (queryset.filter(pk=address_digest(term)) if term else queryset), False
