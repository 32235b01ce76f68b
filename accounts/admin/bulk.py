"""Support actions on agents ticked in the list: confirm with a reason, then call the
same service as the one-agent page for each, up to BULK_LIMIT agents at a time."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpRequest
from django.template.response import TemplateResponse

from accounts.admin.actions import paid_pro_refusal
from accounts.forms import ReasonForm
from accounts.models import Agent, Tier
from accounts.services import agent_reset_usage, agent_set_tier
from lithtrix.core.admin import BULK_LIMIT, staff_user


class AgentBulkActionsMixin(admin.ModelAdmin):
    """The changelist's actions (AgentAdmin mixes this in and lists them in ``actions``)."""

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
            if tier == Tier.FREE and (paying := paid_pro_refusal(agent)):
                self.message_user(request, f"{agent.agent_name}: {paying}", messages.WARNING)
                return False
            return agent_set_tier(
                agent=agent,
                tier=tier,
                actor=staff_user(request),
                reason=reason,
                data={"source": "admin"},
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
            agent_reset_usage(agent=agent, actor=staff_user(request), reason=reason)
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
        self,
        request,
        queryset,
        *,
        title: str,
        intro: str,
        perform: Callable[[Agent, str], bool],
        done: str,
        reason_required: bool = False,
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
