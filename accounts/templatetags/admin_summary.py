"""{% usage_overview as summary %} and {% replica_status as replica %} for the admin
index (templates/admin/index.html)."""

from django import template

from billing.metering.selectors import UsageOverview, usage_overview
from lithtrix.core.replica import REPLICA, replica_alias, replica_configured, replica_lag

register = template.Library()


@register.simple_tag(name="usage_overview")
def usage_overview_tag() -> UsageOverview:
    return usage_overview()


@register.simple_tag(name="replica_status")
def replica_status_tag() -> str:
    """ "no replica", "unreachable (reading from the primary)", "not known (...)" or
    the lag, e.g. "0.2 s"."""
    if not replica_configured():
        return "no replica"
    lag = replica_lag()
    if lag is not None:
        return f"{lag.total_seconds():.1f} s"
    if replica_alias() == REPLICA:
        return "not known (nothing replayed since the replica started)"
    return "unreachable (reading from the primary)"
