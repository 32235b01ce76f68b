"""The metering permission for views of this project."""

from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import Agent
from billing.metering.meter import meter_request
from lithtrix.core.exceptions import InvalidApiKeyError
from lithtrix.core.http import django_request


class Metered(BasePermission):
    """Meters each call to the view: rate limit first, then one metered call.

    Use it last in ``permission_classes`` (a permission after it that refuses
    would leave a counted call behind)::

        class SearchViewSet(viewsets.ViewSet):
            permission_classes = [Metered]

    Over the Free cap the view answers 402 OVER_LIMIT and the call is not
    counted; over the per-minute limit 429, not counted either. DRF checks
    permissions before throttles, so the rate limit is decided here first; the
    default throttle then finds it decided and does not count the request twice.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        agent = request.user
        if not isinstance(agent, Agent):
            raise InvalidApiKeyError()
        # An OPTIONS request (the view's description, not a call to it) is not
        # metered; DRF's metadata also checks permissions with the request cloned
        # as POST/PUT, hence the method of the request as it arrived.
        if django_request(request).method == "OPTIONS":
            return True
        method = request.method.lower()
        if method not in view.http_method_names or not hasattr(view, method):
            return True  # DRF answers 405; a refused method is not a metered call
        meter_request(request, agent=agent)
        return True
