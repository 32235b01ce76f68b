"""{% usage_summary as summary %} for the admin index (templates/admin/index.html)."""

from django import template

from accounts.selectors import UsageSummary, usage_summary

register = template.Library()


@register.simple_tag(name="usage_summary")
def usage_summary_tag() -> UsageSummary:
    return usage_summary()
