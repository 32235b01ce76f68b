"""The agent list and the agent page: usage at a glance, and where support actions start."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlencode

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import BooleanField, ExpressionWrapper, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from accounts.admin.actions import AgentActionsMixin
from accounts.admin.bulk import AgentBulkActionsMixin
from accounts.admin.events import agent_event_by
from accounts.models import Agent, AgentEvent
from billing.metering.selectors import agent_daily_usage, utc_today
from billing.metering.tiers import over_limit_condition, tier_limits
from billing.models import DailyUsage
from keys.crypto import DISPLAY_PREFIX_LENGTH, KEY_PREFIX
from keys.models import ApiKey, KeyEvent
from lithtrix.core.admin import LargeTableAdmin, parse_uuid
from webhooks.selectors import webhook_deliveries_recent, webhook_of

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class RefusedCalls(TypedDict):
    """What the changelist's queryset (AgentAdmin.get_queryset) annotates on each agent."""

    refused_today: int
    refused_total: int


# How many recent keys and audit rows the agent page shows; the rest are one link away.
DETAIL_ROWS = 50
USAGE_DAYS = 30
# From this share of the Free cap on, an agent is "near cap".
NEAR_CAP = 0.8


class OverLimitFilter(admin.SimpleListFilter):
    """Live Free agents whose lifetime cap is reached: billing.metering.tiers.
    over_limit_condition(), served by the (tier, calls_total) index. A deleted agent is
    never over the limit (as on the index), whatever its counter says."""

    title = "over limit"
    parameter_name = "over_limit"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(over_limit_condition(), deleted_at__isnull=True)
        if self.value() == "no":
            return queryset.exclude(over_limit_condition(), deleted_at__isnull=True)
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    """Deleted agents (tombstones) apart from the live ones."""

    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


def short_datetime(value: datetime.datetime | None) -> str | None:
    """2026-11-27 09:40 UTC: the console's one format (lithtrix/formats)."""
    return None if value is None else date_format(localtime(value), "DATETIME_FORMAT")


def tombstone_label(agent: Agent) -> str:
    """A deleted agent's "deleted-<uuid>" name, short: the width of a column."""
    return format_html(
        '<span class="tombstone" title="{}">deleted · {}…</span>',
        agent.agent_name,
        str(agent.pk)[:8],
    )


def cap_badge(agent: Agent) -> str:
    """ "at cap" (red) or "near cap" (amber) for a Free agent; empty otherwise."""
    limit = tier_limits(agent.tier).call_limit
    if limit is None or agent.calls_total < NEAR_CAP * limit:
        return ""
    at_cap = agent.calls_total >= limit
    return format_html(
        '<span class="cap-badge {}" title="{} of {} calls">{}</span>',
        "cap-at" if at_cap else "cap-near",
        f"{agent.calls_total:,}",
        f"{limit:,}",
        "at cap" if at_cap else "near cap",
    )


@admin.register(Agent)
class AgentAdmin(AgentActionsMixin, AgentBulkActionsMixin, LargeTableAdmin):
    list_display = (
        "name",
        "owner",
        "tier",
        "calls_total",
        "call_limit",
        "over_limit",
        "refused_calls",
        "last_metered_call",
        "registered",
    )
    list_filter = ("tier", OverLimitFilter, DeletedFilter)
    # Prefix matches: UPPER(col) LIKE 'TERM%' has an index on PostgreSQL (migration 0002).
    search_fields = ("^agent_name", "^owner_identifier")
    search_help_text = (
        "Agent name or owner (starting with), agent id (the whole UUID), "
        f"or key prefix ({KEY_PREFIX}…)."
    )
    # Only orderings an index serves: (calls_total, id), created_at, (agent_name, owner).
    sortable_by = ("name", "calls_total", "registered")
    ordering = ("-created_at",)
    actions = ("grant_pro", "remove_pro", "reset_usage")
    readonly_fields = (
        "id",
        "agent_name",
        "owner_identifier",
        "created_at",
        "updated_at",
        "tier",
        "calls_total",
        "call_limit",
        "over_limit",
        "refused_calls",
        "last_metered_call",
        "stripe_customer_id",
        "stripe_links",
    )
    fieldsets = (
        (
            "Profile",
            {"fields": ("id", "agent_name", "owner_identifier", "created_at", "updated_at")},
        ),
        (
            "Usage",
            {
                "fields": (
                    "tier",
                    "calls_total",
                    "call_limit",
                    "over_limit",
                    "refused_calls",
                    "last_metered_call",
                )
            },
        ),
        ("Billing", {"fields": ("stripe_customer_id", "stripe_links")}),
    )
    change_form_template = "admin/accounts/agent/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        # Per row, in the page's one query: the cap flag and the agent's refused calls
        # (today's from the (agent, date) unique index, the total from its daily rows).
        usage = DailyUsage.objects.filter(agent=OuterRef("pk")).order_by()
        refused_total = usage.values("agent").annotate(n=Sum("refused")).values("n")
        over_limit = ExpressionWrapper(over_limit_condition(), output_field=BooleanField())
        return (
            super()
            .get_queryset(request)
            .annotate(
                is_over_limit=over_limit,
                refused_today=Coalesce(
                    Subquery(usage.filter(date=utc_today()).values("refused")[:1]), 0
                ),
                refused_total=Coalesce(Subquery(refused_total), 0),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        agent_id = parse_uuid(term) if term else None
        if agent_id is not None:
            return queryset.filter(pk=agent_id), False
        if term.startswith(KEY_PREFIX):
            # A semi-join (IN), so an agent with several matching keys appears once;
            # prefix LIKE 'ltx_abc%' uses the prefix's varchar_pattern_ops index.
            matching = ApiKey.objects.filter(prefix__startswith=term[:DISPLAY_PREFIX_LENGTH])
            return queryset.filter(pk__in=matching.values("agent_id")), False
        return super().get_search_results(request, queryset, search_term)

    # No cascading delete (LargeTableAdmin.has_delete_permission): "Delete agent"
    # goes through accounts.services.agent_delete, which keeps the audit rows.

    @admin.display(description="agent name", ordering="agent_name")
    def name(self, agent: Agent) -> str:
        return tombstone_label(agent) if agent.deleted_at else agent.agent_name

    @admin.display(description="owner identifier")
    def owner(self, agent: Agent) -> str:
        return tombstone_label(agent) if agent.deleted_at else agent.owner_identifier

    @admin.display(description="limit")
    def call_limit(self, agent: Agent) -> str:
        limit = tier_limits(agent.tier).call_limit
        return "unlimited" if limit is None else f"{limit:,}"

    @admin.display(description="cap")
    def over_limit(self, agent: Agent) -> str:
        return cap_badge(agent)

    @admin.display(description="refused today / total")
    def refused_calls(self, agent: WithAnnotations[Agent, RefusedCalls]) -> str:
        if not agent.refused_total:
            return "-"
        return format_html(
            '<span class="refused{}" title="calls refused at the cap (402)">{} / {}</span>',
            " refused-today" if agent.refused_today else "",
            f"{agent.refused_today:,}",
            f"{agent.refused_total:,}",
        )

    @admin.display(description="last metered call", empty_value="never")
    def last_metered_call(self, agent: Agent) -> str | None:
        return short_datetime(agent.last_call_at)

    @admin.display(description="registered", ordering="created_at")
    def registered(self, agent: Agent) -> str | None:
        return short_datetime(agent.created_at)

    @admin.display(description="Stripe (dj-stripe)")
    def stripe_links(self, agent: Agent) -> str:
        links = stripe_admin_links(agent.stripe_customer_id)
        if not agent.stripe_customer_id:
            return "no Stripe customer"
        if not links:
            return "dj-stripe is not installed"
        return format_html_join(
            " · ", '<a href="{}">{}</a>', ((url, label) for label, url in links)
        )

    # --- the agent page ---------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        agent = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if agent is not None:
            context.update(self.object_titles(agent))
            context.update(self._detail_context(request, agent))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def object_titles(self, obj: Agent) -> dict[str, str | None]:
        return {"title": f"Agent {obj.agent_name}", "subtitle": None}

    def _detail_context(self, request: HttpRequest, agent: Agent) -> dict:
        user = request.user
        api_keys = list(
            ApiKey.objects.filter(agent=agent).order_by("-created_at", "-id")[:DETAIL_ROWS]
        )
        key_events = list(
            KeyEvent.objects.filter(agent=agent)
            .select_related("api_key", "actor")
            .order_by("-created_at", "-id")[:DETAIL_ROWS]
        )
        agent_events = list(
            AgentEvent.objects.filter(agent=agent)
            .select_related("actor")
            .order_by("-created_at", "-id")[:DETAIL_ROWS]
        )
        for event in agent_events:
            # Read by the template's "By" column; not a field of the model.
            setattr(event, "by", agent_event_by(event))  # noqa: B010 (no such field to type)
        filtered = urlencode({"agent__id__exact": agent.pk})
        daily_usage = agent_daily_usage(agent=agent, days=USAGE_DAYS)
        webhook = webhook_of(agent=agent)
        return {
            "webhook": webhook,
            "webhook_deliveries": (
                webhook_deliveries_recent(agent=agent)[:DETAIL_ROWS] if webhook else []
            ),
            "daily_usage": daily_usage,
            "usage_total": sum(day.calls for day in daily_usage),
            "refused_in_period": sum(day.refused for day in daily_usage),
            "usage_days": USAGE_DAYS,
            "api_keys": api_keys,
            "key_events": key_events,
            "agent_events": agent_events,
            "detail_rows": DETAIL_ROWS,
            "all_keys_url": f"{reverse('admin:keys_apikey_changelist')}?{filtered}",
            "all_key_events_url": f"{reverse('admin:keys_keyevent_changelist')}?{filtered}",
            "all_agent_events_url": f"{reverse('admin:accounts_agentevent_changelist')}?{filtered}",
            "can_reissue_key": user.has_perm("accounts.reissue_key"),
            "can_change_tier": user.has_perm("accounts.change_tier"),
            "can_reset_usage": user.has_perm("accounts.reset_usage"),
            "can_delete_agent": user.has_perm("accounts.delete_agent") and agent.deleted_at is None,
            "can_revoke_key": user.has_perm("keys.revoke_apikey"),
        }


def stripe_admin_links(customer_id: str | None) -> list[tuple[str, str]]:
    """(label, url) of dj-stripe's admin pages for one Stripe customer, when dj-stripe is in."""
    if not customer_id or not apps.is_installed("djstripe"):
        return []
    # dj-stripe's foreign keys point at the Stripe id (to_field="id"), so
    # customer__id is a plain lookup its changelists accept.
    pages = [
        ("Customer", "admin:djstripe_customer_changelist", {"id": customer_id}),
        ("Subscriptions", "admin:djstripe_subscription_changelist", {"customer__id": customer_id}),
        (
            "Payment methods",
            "admin:djstripe_paymentmethod_changelist",
            {"customer__id": customer_id},
        ),
        ("Invoices", "admin:djstripe_invoice_changelist", {"customer__id": customer_id}),
    ]
    links = []
    for label, name, query in pages:
        try:
            links.append((label, f"{reverse(name)}?{urlencode(query)}"))
        except NoReverseMatch:
            continue
    return links
