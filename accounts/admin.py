"""Staff admin for agents: usage at a glance and support actions.

Every support action calls the service the API uses (keys.services,
accounts.services), with the staff user as the audit row's actor. Viewing needs
only the view permission; each action needs its own permission (see Agent.Meta).
Pages stay fast on millions of agents: indexed filters and searches, no query per
row, and no full COUNT(*) (lithtrix.paginators.LargeTablePaginator).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html_join

from accounts.forms import ReasonForm, ReissueKeyForm, TierForm
from accounts.models import Agent, AgentEvent, Tier
from accounts.selectors import agent_daily_usage
from accounts.services import agent_delete, agent_reset_usage, agent_set_tier
from billing.metering.tiers import over_limit_condition, tier_limits
from keys.crypto import DISPLAY_PREFIX_LENGTH, KEY_PREFIX
from keys.models import ApiKey, KeyEvent
from keys.services import api_key_reissue, api_key_revoke
from lithtrix.errors import ApiError
from lithtrix.http import client_ip
from lithtrix.paginators import LargeTablePaginator

# How many recent keys and audit rows the agent page shows; the rest are one link away.
DETAIL_ROWS = 50
# Most agents one bulk action may change: each is one service call and audit row.
BULK_LIMIT = 100
USAGE_DAYS = 30


def parse_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


class OverLimitFilter(admin.SimpleListFilter):
    """Free agents whose lifetime cap is reached: billing.metering.tiers.over_limit_condition(),
    served by the (tier, calls_total) index."""

    title = "over limit"
    parameter_name = "over_limit"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(over_limit_condition())
        if self.value() == "no":
            return queryset.exclude(over_limit_condition())
        return queryset


class LargeTableChangeList(ChangeList):
    def get_ordering_field(self, field_name):
        # Headers outside sortable_by have no link, but ?o= could still name them;
        # an ordering no index serves would sort the whole table.
        if field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_ordering(self, request, queryset):
        ordering = super().get_ordering(request, queryset)
        if ordering in (["-pk"], ["pk"]) and self.model_admin.get_ordering(request):
            # ?o= named nothing sortable: the default ordering, not the primary key's.
            ordering = [*self.model_admin.get_ordering(request), "-pk"]
        # Django breaks ties with "-pk" whatever the direction; going the first
        # column's way instead lets one (column, id) index serve both directions,
        # where "calls_total ASC, id DESC" would sort every agent with 0 calls.
        if (
            len(ordering) > 1
            and ordering[-1] == "-pk"
            and isinstance(ordering[0], str)
            and not ordering[0].startswith("-")
        ):
            ordering[-1] = "pk"
        return ordering


class LargeTableAdmin(admin.ModelAdmin):
    """Read-only by default; no full-table count or sort on any page view."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    # Facet counts would COUNT(*) every filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50

    def get_changelist(self, request, **kwargs):
        return LargeTableChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The changelist adds get_ordering() itself, unless a column was clicked; left
        # on the queryset it would trail the clicked column and defeat its index.
        return super().get_queryset(request).order_by()

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Agent)
class AgentAdmin(LargeTableAdmin):
    list_display = (
        "agent_name",
        "owner_identifier",
        "tier",
        "calls_total",
        "call_limit",
        "over_limit",
        "created_at",
        "last_call_at",
    )
    list_filter = ("tier", OverLimitFilter)
    # Prefix matches: UPPER(col) LIKE 'TERM%' has an index on PostgreSQL (migration 0002).
    search_fields = ("^agent_name", "^owner_identifier")
    search_help_text = (
        "Agent name or owner (starting with), agent id (the whole UUID), "
        f"or key prefix ({KEY_PREFIX}…)."
    )
    # Only orderings an index serves: (calls_total, id), created_at, (agent_name, owner).
    sortable_by = ("agent_name", "calls_total", "created_at")
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
        "last_call_at",
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
            {"fields": ("tier", "calls_total", "call_limit", "over_limit", "last_call_at")},
        ),
        ("Billing", {"fields": ("stripe_customer_id", "stripe_links")}),
    )
    change_form_template = "admin/accounts/agent/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                is_over_limit=ExpressionWrapper(over_limit_condition(), output_field=BooleanField())
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

    @admin.display(description="call limit")
    def call_limit(self, agent: Agent) -> str:
        limit = tier_limits(agent.tier).call_limit
        return "unlimited" if limit is None else f"{limit:,}"

    @admin.display(description="over limit", boolean=True)
    def over_limit(self, agent: Agent) -> bool:
        return agent.is_over_limit

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
            context.update(self._detail_context(request, agent))
        return super().change_view(request, object_id, form_url, extra_context=context)

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
        filtered = urlencode({"agent__id__exact": agent.pk})
        daily_usage = agent_daily_usage(agent=agent, days=USAGE_DAYS)
        return {
            "daily_usage": daily_usage,
            "usage_total": sum(day.calls for day in daily_usage),
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
            "can_revoke_key": user.has_perm("keys.revoke_apikey"),
            "can_delete_agent": user.has_perm("accounts.delete_agent") and agent.deleted_at is None,
        }

    # --- support actions ----------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/reissue-key/",
                view(self.reissue_key_view),
                name="accounts_agent_reissue_key",
            ),
            path(
                "<path:object_id>/keys/<int:key_id>/revoke/",
                view(self.revoke_key_view),
                name="accounts_agent_revoke_key",
            ),
            path(
                "<path:object_id>/set-tier/",
                view(self.set_tier_view),
                name="accounts_agent_set_tier",
            ),
            path(
                "<path:object_id>/reset-usage/",
                view(self.reset_usage_view),
                name="accounts_agent_reset_usage",
            ),
            path(
                "<path:object_id>/delete-agent/",
                view(self.delete_agent_view),
                name="accounts_agent_delete_agent",
            ),
            *super().get_urls(),
        ]

    def _agent_for_action(self, request: HttpRequest, object_id: str, permission: str) -> Agent:
        agent = self.get_object(request, unquote(object_id))
        if agent is None:
            raise Http404("No such agent.")
        if not (self.has_view_permission(request, agent) and request.user.has_perm(permission)):
            raise PermissionDenied
        return agent

    def _confirm_page(self, request, agent, form, *, title, button, intro) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": agent,
            "agent": agent,
            "title": title,
            "button": button,
            "intro": intro,
            "form": form,
            "change_url": self._change_url(agent),
        }
        return TemplateResponse(request, "admin/accounts/agent/confirm_action.html", context)

    def _change_url(self, agent: Agent) -> str:
        return reverse("admin:accounts_agent_change", args=[agent.pk])

    def _done(self, request, agent, message: str) -> HttpResponseRedirect:
        self.log_change(request, agent, message)
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(agent))

    def reissue_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "accounts.reissue_key")
        form = ReissueKeyForm(
            request.POST if request.method == "POST" else None,
            initial={"active_keys": self._active_keys(agent)},
        )
        if request.method == "POST" and form.is_valid():
            with transaction.atomic():
                # The agent's row lock makes check-then-reissue one step: of two
                # submissions of one page, however close, the second finds keys changed.
                Agent.objects.select_for_update().filter(pk=agent.pk).first()
                if form.cleaned_data["active_keys"] != self._active_keys(agent):
                    new_key = None
                else:
                    new_key = api_key_reissue(
                        agent=agent,
                        actor=request.user,
                        reason=form.cleaned_data["reason"],
                        ip=client_ip(request),
                    )
            if new_key is None:
                self.message_user(
                    request,
                    "The agent's keys changed since that page was opened (a second click or a "
                    "reload?), so nothing was done. Reissue again if a new key is still needed.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(self._change_url(agent))
            self.log_change(
                request, agent, f"Reissued the API key (new {new_key[:DISPLAY_PREFIX_LENGTH]}…)"
            )
            # The key is in this response body only: not in a message, the session or a log.
            response = TemplateResponse(
                request,
                "admin/accounts/agent/key_reissued.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "original": agent,
                    "agent": agent,
                    "title": "New API key",
                    "api_key": new_key,
                    "change_url": self._change_url(agent),
                },
            )
            add_never_cache_headers(response)
            return response
        return self._confirm_page(
            request,
            agent,
            form,
            title="Reissue API key",
            button="Revoke the current key and issue a new one",
            intro="Every active key of this agent stops working now. The new key is shown "
            "once, on the next page; hand it to the agent's owner over a safe channel.",
        )

    @staticmethod
    def _active_keys(agent: Agent) -> str:
        """The agent's active key ids, as the reissue form carries them."""
        active = ApiKey.objects.filter(agent=agent, revoked_at__isnull=True).order_by("pk")
        return ",".join(str(pk) for pk in active.values_list("pk", flat=True))

    def revoke_key_view(self, request: HttpRequest, object_id: str, key_id: int) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "keys.revoke_apikey")
        api_key = get_object_or_404(ApiKey, pk=key_id, agent=agent)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            revoked = api_key_revoke(
                api_key=api_key,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                ip=client_ip(request),
            )
            if not revoked:
                self.message_user(
                    request, f"Key {api_key.prefix}… was already revoked.", messages.WARNING
                )
                return HttpResponseRedirect(self._change_url(agent))
            return self._done(request, agent, f"Revoked key {api_key.prefix}…")
        return self._confirm_page(
            request,
            agent,
            form,
            title=f"Revoke key {api_key.prefix}…",
            button="Revoke this key",
            intro="The key stops working at once, for good. The agent gets no new key: "
            "use “Reissue key” when it needs one.",
        )

    def set_tier_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "accounts.change_tier")
        data = request.POST if request.method == "POST" else None
        form = TierForm(data, initial={"tier": request.GET.get("tier", Tier.PRO)})
        if request.method == "POST" and form.is_valid():
            tier = form.cleaned_data["tier"]
            changed = agent_set_tier(
                agent=agent,
                tier=tier,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                data={"source": "admin"},
            )
            label = Tier(tier).label
            if not changed:
                self.message_user(request, f"The agent was already on {label}.", messages.WARNING)
                return HttpResponseRedirect(self._change_url(agent))
            return self._done(request, agent, f"Tier set to {label} by hand")
        tier = form["tier"].value()
        label = Tier(tier).label if tier in Tier.values else tier
        return self._confirm_page(
            request,
            agent,
            form,
            title=f"Set tier to {label}",
            button=f"Set tier to {label}",
            intro="Changes the tier here only: nothing is charged or refunded in Stripe.",
        )

    def reset_usage_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "accounts.reset_usage")
        form = ReasonForm(request.POST if request.method == "POST" else None, reason_required=True)
        if request.method == "POST" and form.is_valid():
            previous = agent_reset_usage(
                agent=agent, actor=request.user, reason=form.cleaned_data["reason"]
            )
            return self._done(request, agent, f"Usage counter reset from {previous:,} to 0")
        return self._confirm_page(
            request,
            agent,
            form,
            title="Reset usage counter",
            button="Reset the counter to 0",
            intro=f"Sets the lifetime call counter ({agent.calls_total:,} calls) back to 0. "
            "Daily usage history is kept.",
        )

    def delete_agent_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "accounts.delete_agent")
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                deleted = agent_delete(
                    agent=agent, actor=request.user, reason=form.cleaned_data["reason"]
                )
            except ApiError as error:  # e.g. Stripe failed: nothing was changed
                self.message_user(request, f"Not deleted: {error.message}", messages.ERROR)
                return HttpResponseRedirect(self._change_url(agent))
            if not deleted:
                self.message_user(request, "The agent was already deleted.", messages.WARNING)
                return HttpResponseRedirect(self._change_url(agent))
            return self._done(request, agent, "Agent deleted (keys revoked, name and owner erased)")
        return self._confirm_page(
            request,
            agent,
            form,
            title="Delete agent",
            button="Delete this agent",
            intro="Cancels any Stripe subscription, revokes every key and erases the agent's "
            "name and owner. Usage counts and audit rows are kept. This cannot be undone.",
        )

    # --- the same actions on agents selected in the list ------------------------------

    def has_change_tier_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_tier")

    def has_reset_usage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.reset_usage")

    @admin.action(description="Grant Pro to the selected agents", permissions=["change_tier"])
    def grant_pro(self, request, queryset):
        return self._bulk_set_tier(request, queryset, Tier.PRO)

    @admin.action(description="Remove Pro from the selected agents", permissions=["change_tier"])
    def remove_pro(self, request, queryset):
        return self._bulk_set_tier(request, queryset, Tier.FREE)

    def _bulk_set_tier(self, request, queryset, tier: str):
        def perform(agent: Agent, reason: str) -> bool:
            return agent_set_tier(
                agent=agent, tier=tier, actor=request.user, reason=reason, data={"source": "admin"}
            )

        label = Tier(tier).label
        return self._bulk_action(
            request,
            queryset,
            title=f"Set tier to {label}",
            intro="Changes the tier here only: nothing is charged or refunded in Stripe.",
            perform=perform,
            done=f"Tier set to {label} by hand",
        )

    @admin.action(
        description="Reset the usage counter of the selected agents", permissions=["reset_usage"]
    )
    def reset_usage(self, request, queryset):
        def perform(agent: Agent, reason: str) -> bool:
            agent_reset_usage(agent=agent, actor=request.user, reason=reason)
            return True

        return self._bulk_action(
            request,
            queryset,
            title="Reset usage counters",
            intro="Sets each lifetime call counter back to 0. Daily usage history is kept.",
            perform=perform,
            done="Usage counter reset to 0",
            reason_required=True,
        )

    def _bulk_action(
        self, request, queryset, *, title, intro, perform, done, reason_required=False
    ) -> TemplateResponse | None:
        """Ask for confirmation (and a reason), then run ``perform`` on each agent.

        Returning None sends the admin back to the list, with the message.
        """
        if queryset.order_by().values("pk")[: BULK_LIMIT + 1].count() > BULK_LIMIT:
            self.message_user(
                request,
                f"Select at most {BULK_LIMIT} agents for this action; filter the list first.",
                messages.ERROR,
            )
            return None
        confirmed = "confirm" in request.POST
        form = ReasonForm(request.POST if confirmed else None, reason_required=reason_required)
        if confirmed and form.is_valid():
            changed = 0
            for agent in queryset:
                if perform(agent, form.cleaned_data["reason"]):
                    changed += 1
                    self.log_change(request, agent, done)
            self.message_user(request, f"{done}: {changed} agent(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "intro": intro,
            "form": form,
            "agents": list(queryset),
            "action": request.POST["action"],
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/accounts/agent/confirm_bulk_action.html", context)


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
    ]
    links = []
    for label, name, query in pages:
        try:
            links.append((label, f"{reverse(name)}?{urlencode(query)}"))
        except NoReverseMatch:
            continue
    return links


@admin.register(AgentEvent)
class AgentEventAdmin(LargeTableAdmin):
    list_display = ("created_at", "agent", "kind", "actor", "reason")
    list_filter = ("kind",)
    list_select_related = ("agent", "actor")
    # -id follows creation order and is the primary key index: no sort of the table.
    ordering = ("-id",)
    sortable_by = ()
    search_fields = ("agent__id",)
    search_help_text = "Agent id (the whole UUID)."
    fields = ("agent", "kind", "actor", "reason", "data", "ip", "created_at")

    def get_search_results(self, request, queryset, search_term):
        return search_by_agent_id(queryset, search_term)


def search_by_agent_id(queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
    """Audit and usage tables are searched by exact agent id: an indexed equality."""
    if not search_term.strip():
        return queryset, False
    agent_id = parse_uuid(search_term)
    return (queryset.filter(agent_id=agent_id) if agent_id else queryset.none()), False
