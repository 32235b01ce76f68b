"""The staff console's frame: the admin site and its branding.

INSTALLED_APPS names ``LithtrixAdminConfig`` instead of ``django.contrib.admin`` so
``admin.site`` is the ``LithtrixAdminSite``; the helpers the apps' admin pages
share are in lithtrix.core.admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest

if TYPE_CHECKING:
    pass


class LithtrixAdminSite(admin.AdminSite):
    site_header = "Lithtrix support"
    site_title = "Lithtrix support"
    index_title = "Overview"
    # The admin has no public site of its own; the API's docs are what it serves.
    site_url = "/v1/docs"
    # The changelists need the width (ten columns on the agent list); Home and the
    # breadcrumbs are one click from everything.
    enable_nav_sidebar = False
    # The index and the side bar lead with what support looks at most: these apps
    # in this order (others follow, by name), each app's main page first.
    app_order = ("accounts", "keys", "billing", "events", "mail", "djstripe")
    lead_models = ("accounts.agent", "keys.apikey")
    app_names = {"djstripe": "Stripe (read-only mirror)"}

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        rank = {label: n for n, label in enumerate(self.app_order)}
        for app in apps:
            app["name"] = self.app_names.get(app["app_label"], app["name"])
            app["models"].sort(
                key=lambda model: (
                    f"{app['app_label']}.{model['object_name'].lower()}" not in self.lead_models
                )
            )
        return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(rank)), app["name"]))


class LithtrixAdminConfig(AdminConfig):
    default_site = "lithtrix.admin.LithtrixAdminSite"
