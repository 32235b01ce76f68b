"""Prometheus metrics (GET /metrics, lithtrix.core.probes, serves them).

The names an operator alerts on (see README, "Monitoring"):

- lithtrix_http_requests_total{endpoint, method, status}
- lithtrix_http_request_duration_seconds{endpoint} (histogram)
- lithtrix_metered_calls_total{outcome="allowed"|"over_limit"}
- lithtrix_rate_limit_refusals_total{bucket=<throttle scope>: "agent_free", "register", ...}
- lithtrix_rate_limit_store_failures_total{action="open"|"closed"}
- lithtrix_stripe_calls_total{outcome} and lithtrix_stripe_call_duration_seconds
- lithtrix_dependency_failures_total{dependency="database"|"cache"}
- lithtrix_billing_drift_total{direction="to_free"|"to_pro"} (tiers the Stripe
  reconciliation found wrong and repaired)
- lithtrix_jobs_queued, lithtrix_jobs_oldest_queued_age_seconds, lithtrix_jobs_dead
  (the job queue, read from the database at scrape time)

With several server processes (gunicorn workers), set PROMETHEUS_MULTIPROC_DIR to
an empty directory writable by every worker: each process writes its values
there and /metrics adds them up (prometheus_client's multiprocess mode; the
gunicorn config must mark dead workers, see README).

This module imports nothing from the apps: they call it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# prometheus_client opens its files there as the metrics below are declared, in every
# process that imports this (manage.py's commands too, before gunicorn's on_starting
# empties the directory): one missing, as on a fresh /run, must not crash them.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("lithtrix_http_requests", "Answered requests.", ["endpoint", "method", "status"])
REQUEST_LATENCY = Histogram(
    "lithtrix_http_request_duration_seconds",
    "Time from the first middleware to the answer.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
METERED_CALLS = Counter("lithtrix_metered_calls", "Metered calls by outcome.", ["outcome"])
RATE_LIMIT_REFUSALS = Counter(
    "lithtrix_rate_limit_refusals", "429 answers by the bucket that refused.", ["bucket"]
)
RATE_LIMIT_STORE_FAILURES = Counter(
    "lithtrix_rate_limit_store_failures",
    "Requests whose rate limit could not be decided (Redis down): let through or refused.",
    ["action"],
)
STRIPE_CALLS = Counter("lithtrix_stripe_calls", "Stripe HTTP requests by outcome.", ["outcome"])
STRIPE_LATENCY = Histogram(
    "lithtrix_stripe_call_duration_seconds",
    "Duration of one Stripe HTTP request (one attempt).",
    buckets=_LATENCY_BUCKETS,
)
DEPENDENCY_FAILURES = Counter(
    "lithtrix_dependency_failures", "Failed uses of a dependency.", ["dependency"]
)


BILLING_DRIFT = Counter(
    "lithtrix_billing_drift",
    "Agent tiers the Stripe reconciliation found different from Stripe and repaired.",
    ["direction"],
)


def observe_billing_drift(direction: str) -> None:
    """One tier repaired by the reconciliation: ``direction`` is "to_free" or "to_pro"."""
    BILLING_DRIFT.labels(direction=direction).inc()


class JobQueueCollector(Collector):
    """The job queue's state, read at scrape time: two small aggregates, no counter to
    keep in step. A database that does not answer leaves these series out rather
    than failing the scrape."""

    NAMES = {
        "lithtrix_jobs_queued": "Jobs waiting for a worker.",
        "lithtrix_jobs_oldest_queued_age_seconds": (
            "How long the oldest waiting job has waited (0 when none waits)."
        ),
        "lithtrix_jobs_dead": "Jobs that failed every try (the admin's failed tasks, to resubmit).",
    }

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering asks for the names; without this it would collect (a query at import).
        for name, documentation in self.NAMES.items():
            yield GaugeMetricFamily(name, documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import DatabaseError
        from django.db.models import Count, Min
        from django.utils import timezone
        from django_q.models import Failure, OrmQ

        now = timezone.now()
        try:
            # Waiting: not handed to a worker, or handed to one that died (its lock,
            # now + Q_CLUSTER["retry"], has passed).
            waiting = OrmQ.objects.filter(lock__lte=now).aggregate(
                n=Count("id"), oldest=Min("lock")
            )
            dead = Failure.objects.count()
        except DatabaseError:
            return
        oldest = waiting["oldest"]
        values = {
            "lithtrix_jobs_queued": waiting["n"],
            "lithtrix_jobs_oldest_queued_age_seconds": (
                (now - oldest).total_seconds() if oldest is not None else 0.0
            ),
            "lithtrix_jobs_dead": dead,
        }
        for name, documentation in self.NAMES.items():
            yield GaugeMetricFamily(name, documentation, value=values[name])


JOB_QUEUE = JobQueueCollector()
REGISTRY.register(JOB_QUEUE)


def observe_stripe_call(outcome: str, seconds: float) -> None:
    """One Stripe request: ``outcome`` is the HTTP status class ("2xx", "4xx", "5xx")
    or "network_error"."""
    STRIPE_CALLS.labels(outcome=outcome).inc()
    STRIPE_LATENCY.observe(seconds)


# --- requests -----------------------------------------------------------------

# Paths a middleware answers before URLs are resolved (ProbeMiddleware, and
# billing.metering.middleware's /v1/authorize, labelled as its route would be).
_MIDDLEWARE_ENDPOINTS = {
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/v1/authorize": "/v1/authorize",
}


def _endpoint(request: HttpRequest) -> str:
    """The route, not the path: a label per endpoint, never one per URL a client invents."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.url_name == "unrouted":  # the /v1 catch-all (404)
        return "unrouted"
    if match is not None and match.route:
        return "/" + match.route.lstrip("^").rstrip("$")
    return _MIDDLEWARE_ENDPOINTS.get(request.path, "unrouted")


class MetricsMiddleware:
    """Counts and times every answer. First in MIDDLEWARE, so it sees all of them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        endpoint = _endpoint(request)
        REQUESTS.labels(
            endpoint=endpoint, method=_method(request), status=str(response.status_code)
        ).inc()
        REQUEST_LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(request: HttpRequest) -> str:
    return request.method if request.method in _METHODS else "OTHER"


# --- GET /metrics -------------------------------------------------------------


def exposition() -> bytes:
    """Every metric in Prometheus' text format; all processes' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        registry.register(JOB_QUEUE)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
