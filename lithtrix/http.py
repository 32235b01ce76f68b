"""Small request helpers shared by the apps."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address.

    REMOTE_ADDR, unless LITHTRIX_TRUSTED_PROXY_COUNT says how many proxies of ours
    append to X-Forwarded-For; then the address those proxies saw. A client can
    put anything in X-Forwarded-For, so it is never trusted by default.
    """
    proxies = settings.LITHTRIX_TRUSTED_PROXY_COUNT
    if proxies > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def django_request(request: HttpRequest) -> HttpRequest:
    """The Django request itself, whether given it or DRF's Request that wraps it."""
    return getattr(request, "_request", request)


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
