"""Support actions on one agent, each its own page: confirm (with a reason), then call
the service the API uses, with the staff user as the audit row's actor."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers

from accounts.forms import ReasonForm, ReissueKeyForm, TierForm
from accounts.models import Agent, Tier
from accounts.services import agent_delete, agent_reset_usage, agent_set_tier
from billing.payments.selectors import paying_subscription_ids
from keys.crypto import DISPLAY_PREFIX_LENGTH
from keys.models import ApiKey
from keys.services import api_key_reissue, api_key_revoke
from lithtrix.core.admin import staff_user
from lithtrix.core.exceptions import ApiError
from lithtrix.core.http import client_ip


class AgentActionsMixin(admin.ModelAdmin):
    """The agent page's action URLs and views (AgentAdmin mixes this in)."""

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        actions: list[tuple[str, Callable[..., HttpResponse], str]] = [
            ("reissue-key/", self.reissue_key_view, "reissue_key"),
            ("keys/<int:key_id>/revoke/", self.revoke_key_view, "revoke_key"),
            ("set-tier/", self.set_tier_view, "set_tier"),
            ("reset-usage/", self.reset_usage_view, "reset_usage"),
            ("delete-agent/", self.delete_agent_view, "delete_agent"),
        ]
        return [
            *(
                path(f"<path:object_id>/{route}", view(handler), name=f"accounts_agent_{name}")
                for route, handler, name in actions
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

    def _agent_page(self, request, agent: Agent, template: str, **context) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": agent,
            "agent": agent,
            "change_url": self._change_url(agent),
            **context,
        }
        return TemplateResponse(request, template, context)

    def _confirm_page(self, request, agent, form, *, title, button, intro) -> TemplateResponse:
        return self._agent_page(
            request,
            agent,
            "admin/accounts/agent/confirm_action.html",
            title=title,
            button=button,
            intro=intro,
            form=form,
        )

    def _change_url(self, agent: Agent) -> str:
        return reverse("admin:accounts_agent_change", args=[agent.pk])

    def _done(self, request, agent, message: str) -> HttpResponseRedirect:
        self.log_change(request, agent, message)
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(agent))

    def _refused(self, request, agent, message: str) -> HttpResponseRedirect:
        self.message_user(request, message, messages.WARNING)
        return HttpResponseRedirect(self._change_url(agent))

    def reissue_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "accounts.reissue_key")
        form = ReissueKeyForm(
            request.POST if request.method == "POST" else None,
            initial={"working_keys": self._working_keys(agent)},
        )
        if not (request.method == "POST" and form.is_valid()):
            return self._confirm_page(
                request,
                agent,
                form,
                title="Reissue API key",
                button="Revoke the current key and issue a new one",
                intro="Every working key of this agent is revoked now. The new key is shown "
                "once, on the next page; hand it to the agent's owner over a safe channel.",
            )
        new_key = api_key_reissue(
            agent=agent,
            actor=staff_user(request),
            reason=form.cleaned_data["reason"],
            ip=client_ip(request),
            expected_working_keys=form.cleaned_data["working_keys"],
        )
        if new_key is None:
            return self._refused(
                request,
                agent,
                "The agent's keys changed since that page was opened (a second click or a "
                "reload?), so nothing was done. Reissue again if a new key is still needed.",
            )
        self.log_change(
            request, agent, f"Reissued the API key (new {new_key[:DISPLAY_PREFIX_LENGTH]}…)"
        )
        # The key is in this response body only: not in a message, the session or a log.
        response = self._agent_page(
            request,
            agent,
            "admin/accounts/agent/key_reissued.html",
            title="New API key",
            api_key=new_key,
        )
        add_never_cache_headers(response)
        return response

    @staticmethod
    def _working_keys(agent: Agent) -> str:
        """The agent's working key ids, as the reissue form carries them."""
        active = ApiKey.objects.filter(agent=agent, revoked_at__isnull=True).order_by("pk")
        return ",".join(str(pk) for pk in active.values_list("pk", flat=True))

    def revoke_key_view(self, request: HttpRequest, object_id: str, key_id: int) -> HttpResponse:
        agent = self._agent_for_action(request, object_id, "keys.revoke_apikey")
        api_key = get_object_or_404(ApiKey, pk=key_id, agent=agent)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            revoked = api_key_revoke(
                api_key=api_key,
                actor=staff_user(request),
                reason=form.cleaned_data["reason"],
                ip=client_ip(request),
            )
            if not revoked:
                return self._refused(request, agent, f"Key {api_key.prefix}… was already revoked.")
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
        if form["tier"].value() == Tier.FREE and (paying := paid_pro_refusal(agent)):
            return self._refused(request, agent, paying)
        if request.method == "POST" and form.is_valid():
            tier = form.cleaned_data["tier"]
            changed = agent_set_tier(
                agent=agent,
                tier=tier,
                actor=staff_user(request),
                reason=form.cleaned_data["reason"],
                data={"source": "admin"},
            )
            label = Tier(tier).label
            if not changed:
                return self._refused(request, agent, f"The agent was already on {label}.")
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
                agent=agent, actor=staff_user(request), reason=form.cleaned_data["reason"]
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
                    agent=agent, actor=staff_user(request), reason=form.cleaned_data["reason"]
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


def paid_pro_refusal(agent: Agent) -> str | None:
    """Why Pro cannot be removed by hand, or None: a live Stripe subscription pays for it.

    Removing it here would leave Stripe charging, and the next reconciliation would
    put Pro back: the subscription has to end first.
    """
    paying = paying_subscription_ids(customer_id=agent.stripe_customer_id)
    if not paying:
        return None
    return (
        f"Not changed: Pro is paid by Stripe subscription {', '.join(paying)}, which is "
        "live. Removing Pro here would leave Stripe charging, and reconciliation would "
        "put Pro back. End the subscription first: the agent's POST /v1/billing/cancel "
        "(Pro until the paid period ends), or Stripe's dashboard."
    )
