"""Liveness and readiness probes for process managers and load balancers.

Plain Django views: no authentication, no DRF, so a probe costs next to nothing.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse

from lithtrix import outages
from lithtrix.errors import ServiceUnavailableError, api_error_response, refuse_method
from lithtrix.responses import json_response


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
