"""The staff login's lockouts: django-axes with one limit per user name and address,
and another per address.

axes compares every lockout parameter with one AXES_FAILURE_LIMIT; the address
alone then locks as soon as any one user name does, and the pair means nothing.
Here the pair locks at AXES_FAILURE_LIMIT, the address at
LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


class AdminLoginHandler(AxesDatabaseHandler):
    """AXES_LOCKOUT_PARAMETERS must be [["username", "ip_address"], "ip_address"]."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        pair, address = (
            attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if address >= settings.LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(pair, get_failure_limit(request, credentials))
        return pair

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> int:
        # A right password forgets that user name's failures from that address only:
        # logging in to an account of one's own must not wipe the address's count.
        pair = self.filter_user_attempts(request, credentials)[0]
        count, _ = pair.delete()
        return count
