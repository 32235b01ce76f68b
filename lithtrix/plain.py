"""Keyed GET answers drawn without DRF's request machinery, byte for byte as DRF draws them.

GET /v1/me is called on every start of an agent and by health checks of agents'
own; DRF's dispatch (request wrapping, negotiation, authenticator, permission and
throttle objects, the renderer) costs more than the answer itself. ``plain_get``
answers the common GET or HEAD (JSON accepted, no ``?format=``) itself, with the
same authentication (keys.authentication.authenticate_request), the same rate
limit (lithtrix.core.ratelimit.limit_agent, whose RateLimit-* headers
RateLimitHeadersMiddleware adds), the same envelope and the same headers; every
other request (DELETE, OPTIONS, an Accept DRF would refuse with 406, ...) goes to
the DRF view unchanged. lithtrix/tests/test_plain.py holds the two to the same
answers.

The returned view carries the DRF view's attributes (``cls``, ``actions``,
``initkwargs``), so the OpenAPI document describes it from the viewset as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

from accounts.models import Agent
from keys.authentication import authenticate_request
from lithtrix.core.exceptions import ApiError
from lithtrix.core.ratelimit import limit_agent
from lithtrix.core.responses import api_error_response

# Media ranges that DRF's content negotiation matches to its JSONRenderer. Anything
# else (including the spellings DRF would also accept) is left to DRF.
_JSON_RANGES = frozenset({"*/*", "application/*", "application/json"})
_RENDERER = JSONRenderer()


def accepts_json(accept: str | None) -> bool:
    """True when an Accept header certainly selects DRF's JSONRenderer."""
    if accept is None:
        return True  # DRF reads a missing header as */*
    return any(token.split(";", 1)[0].strip() in _JSON_RANGES for token in accept.split(","))


def plain_get(
    drf_view: Callable[..., HttpResponse], answer: Callable[[Agent], Any]
) -> Callable[[HttpRequest], HttpResponse]:
    """``drf_view`` (a viewset's ``as_view``), with its keyed GET answered by
    ``answer(agent)`` directly."""
    view_class = drf_view.cls  # type: ignore[attr-defined]
    actions = dict(drf_view.actions)  # type: ignore[attr-defined]
    if "get" in actions:
        actions.setdefault("head", actions["get"])  # as DRF's viewset view does per request
    # APIView.allowed_methods for this action map (DRF sends Allow on every answer).
    allow = ", ".join(
        method.upper()
        for method in view_class.http_method_names
        if method in actions or hasattr(view_class, method)
    )

    @functools.wraps(drf_view)
    def view(request: HttpRequest) -> HttpResponse:
        if (
            request.method not in ("GET", "HEAD")
            or api_settings.URL_FORMAT_OVERRIDE in request.GET
            or not accepts_json(request.META.get("HTTP_ACCEPT"))
        ):
            return drf_view(request)
        try:
            agent, _api_key = authenticate_request(request)
            # As DRF's authentication does: the request's user is the agent (the
            # access log names it).
            request.user = agent  # type: ignore[assignment]
            limit_agent(request, agent_id=agent.pk, tier=agent.tier)
        except ApiError as error:
            response: HttpResponse = api_error_response(error, request)
        else:
            # DRF's own renderer (stateless), so the bytes are the viewset's.
            body = _RENDERER.render(answer(agent))
            response = HttpResponse(body, content_type=_RENDERER.media_type)
        response["Allow"] = allow
        return response

    return view
