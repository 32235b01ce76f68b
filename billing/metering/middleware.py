"""/v1/authorize answered early in MIDDLEWARE: the one path every proxied call takes."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from billing.metering.views import authorize
from lithtrix.core.middleware import api_exception_response
from lithtrix.core.notes import add_rate_limit_headers

AUTHORIZE_PATH = "/v1/authorize"


class AuthorizeMiddleware:
    """Runs the authorize view for /v1/authorize, and returns its answer.

    A gateway calls /v1/authorize once for every call it proxies, so what runs
    there is paid on all of them. The view uses none of what the rest of
    MIDDLEWARE provides: sessions, CSRF, request.user, messages, X-Frame-Options
    and django-axes serve the staff console, CommonMiddleware only redirects, and
    the URL resolver would find this same view. Placed after SecurityMiddleware,
    so every earlier middleware (metrics, request id, Cache-Control, probes, Host,
    body size, Django's security headers) treats this answer as any other; what
    the later ones add to an API answer is added here: the RateLimit-* and
    X-Calls-Remaining headers, and the envelope for an exception the view lets out
    (ApiEdgeMiddleware's, whose process_exception only sees exceptions of views
    the URL resolver ran). lithtrix.urls still routes the path to the same view,
    for reverse() and the OpenAPI document.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info != AUTHORIZE_PATH:
            return self.get_response(request)
        try:
            response = authorize(request)
        except Exception as exception:  # every one: the envelope, never Django
            response = api_exception_response(request, exception)
        add_rate_limit_headers(request, response)
        return response
