"""Read-only admin for metered usage per agent and day, Stripe's events as received,
and the part of dj-stripe's Stripe mirror support uses."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin

from billing.models import DailyUsage, StripeEventReceipt
from lithtrix.core.admin import (
    LargeTableAdmin,
    PlainTitlesAdmin,
    ReadOnlyAdminMixin,
    search_by_agent_id,
)


@admin.register(DailyUsage)
class DailyUsageAdmin(LargeTableAdmin):
    list_display = ("date", "agent", "calls", "refused")
    list_select_related = ("agent",)
    ordering = ("-date", "-id")
    sortable_by = ()
    fields = ("agent", "date", "calls", "refused")
    search_fields = ("agent__id",)
    search_help_text = "Agent id (the whole UUID)."

    def get_search_results(self, request, queryset, search_term):
        return search_by_agent_id(queryset, search_term)


@admin.register(StripeEventReceipt)
class StripeEventReceiptAdmin(LargeTableAdmin):
    """Stripe's events as their webhooks arrived, and whether the job applied them."""

    list_display = ("id", "type", "received_at", "attempts", "applied_at", "last_error")
    ordering = ("-received_at",)
    sortable_by = ()
    fields = ("id", "type", "received_at", "attempts", "applied_at", "last_error", "body")
    search_fields = ("=id",)
    search_help_text = "Stripe event id (evt_...)."


# dj-stripe registers an admin for each of its ~45 models. Support looks a customer up
# from the agent page and reads these; the rest (and every action, which would call
# Stripe) is out of the console. A mirror is edited in Stripe, never here.
STRIPE_MIRROR_PAGES = ("customer", "subscription", "invoice", "paymentmethod", "event")


class StripeMirrorAdminMixin(ReadOnlyAdminMixin, PlainTitlesAdmin):
    def get_actions(self, request):
        return {}


def stripe_mirror_reduce(site: admin.AdminSite) -> None:
    """Unregister dj-stripe's pages but STRIPE_MIRROR_PAGES; make those read-only."""
    if not apps.is_installed("djstripe"):
        return
    # djstripe's admin module comes after ours in INSTALLED_APPS: register it first.
    import djstripe.admin  # noqa: F401

    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label != "djstripe":
            continue
        site.unregister(model)
        if model._meta.model_name in STRIPE_MIRROR_PAGES:
            base = type(model_admin)
            read_only = type(f"ReadOnly{base.__name__}", (StripeMirrorAdminMixin, base), {})
            site.register(model, read_only)


stripe_mirror_reduce(admin.site)
