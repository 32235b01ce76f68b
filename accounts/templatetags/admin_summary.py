"""{% usage_overview as summary %} for the admin index (templates/admin/index.html)."""

from django import template

from billing.metering.selectors import UsageOverview, usage_overview

register = template.Library()


@register.simple_tag(name="usage_overview")
def usage_overview_tag() -> UsageOverview:
    return usage_overview()
