"""Liveness and readiness probes for process managers and load balancers, and
GET /metrics for the scraper.

Plain Django views: no authentication, no DRF, so a probe costs next to nothing.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST

from lithtrix.core import outages
from lithtrix.core.exceptions import NotFoundError, PermissionDeniedError, ServiceUnavailableError
from lithtrix.core.http import bearer_token, client_ip
from lithtrix.core.metrics import exposition
from lithtrix.core.responses import api_error_response, json_response, refuse_method


def require_safe(view: Callable[[HttpRequest], HttpResponse]) -> Callable:
    """GET and HEAD only; any other method gets the 405 envelope."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        return refuse_method(request, ("GET", "HEAD")) or view(request)

    return wrapper


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and answering; touches neither database nor cache."""
    return json_response({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    # A round trip through the shared cache: a write, then the read of that write.
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(key)


READINESS_CHECKS = {"database": _check_database, "cache": _check_cache}


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database and the cache answer; 503 envelope naming what failed."""
    checks: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
        except Exception as exc:
            # Logged once per incident, not once per probe.
            outages.report_failure(name, exc, action="/readyz answers 503")
            checks[name] = "unavailable"
        else:
            outages.report_success(name)
            checks[name] = "ok"
    failed = [name for name, result in checks.items() if result != "ok"]
    if failed:
        error = ServiceUnavailableError(
            f"Not ready: {', '.join(failed)} unreachable.", extra={"checks": checks}
        )
        return api_error_response(error, request)
    return json_response({"status": "ok", "checks": checks})


@functools.cache
def _allowed_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False)
        for item in value.split(",")
        if item.strip()
    )


def _client_allowed(request: HttpRequest) -> bool:
    ip = client_ip(request)
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    networks = _allowed_networks(settings.LITHTRIX_METRICS_ALLOWED_NETWORKS)
    return any(address in network for network in networks)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: to allowed networks, or with ``Authorization: Bearer <token>``.

    A wrong token is 403; a client that is neither allowed nor presents a token is
    told nothing is here (404).
    """

    token = bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
    expected = settings.LITHTRIX_METRICS_TOKEN
    if token is not None:
        if not (expected and hmac.compare_digest(token.encode(), expected.encode())):
            return api_error_response(PermissionDeniedError(), request)
    elif not _client_allowed(request):
        return api_error_response(NotFoundError(), request)
    refused = refuse_method(request, ("GET", "HEAD"))
    if refused is not None:
        return refused
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
