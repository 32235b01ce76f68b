"""gunicorn settings for Lithtrix (`make serve`, bench/, the multi-process tests).

Every value can be overridden on the command line or with GUNICORN_* variables;
the app itself reads DATABASE_URL, REDIS_URL and the rest from the environment.
"""

import os
import shutil

from gunicorn import glogging

wsgi_app = "lithtrix.wsgi:application"
# The processes that serve requests bound every PostgreSQL statement and lock wait
# (lithtrix/settings/database.py): a table locked by a migration or a stuck query
# answers 503 in seconds instead of holding workers until gunicorn kills them (an
# HTML 500). Set before the app is loaded; migrate and the job worker keep no bound.
os.environ.setdefault("LITHTRIX_DB_STATEMENT_TIMEOUT_MS", "10000")
os.environ.setdefault("LITHTRIX_DB_LOCK_TIMEOUT_MS", "3000")


def _number(*names: str, default: int) -> int:
    """The first of ``names`` set to something, as a whole number; ``default`` when none
    is (empty is unset). make serve's deploy/serve_check.py has refused a value that is
    not a number before gunicorn reads this file."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return int(value)
    return default


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = _number("WORKERS", "GUNICORN_WORKERS", default=4)
# sync by default, chosen by measurement behind deploy/nginx/lithtrix.conf (docs/
# operations.md, "Worker class, measured"): p99 stays near p50 where gthread 4x4's
# does not. nginx buffers requests and answers, so a slow client never holds a
# worker either way. A sync worker is busy for the whole of an outbound call: at
# most LITHTRIX_STRIPE_CALL_SLOTS (2) billing actions wait on Stripe at once, so a
# hanging Stripe holds that many workers in calls to it at most (a second billing
# request of the same agent also waits up to STRIPE_BILLING_LOCK_WAIT_SECONDS for the
# first, in a worker: docs/billing.md). GUNICORN_WORKER_CLASS=gthread
# (GUNICORN_THREADS each) serves other requests meanwhile; each thread holds its own
# database connection (workers x threads per host: size PostgreSQL or PgBouncer).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
# gunicorn turns a sync worker with more than one thread into gthread: threads only
# for gthread, so GUNICORN_WORKER_CLASS=sync really is sync.
threads = _number("GUNICORN_THREADS", default=4) if worker_class == "gthread" else 1
timeout = _number("GUNICORN_TIMEOUT", default=30)
graceful_timeout = 30
keepalive = 5
# The app is loaded once, in the arbiter, and every worker is forked from it
# (lithtrix/wsgi.py also loads the URLconf there): a worker starts, or restarts after
# max_requests, in milliseconds. Without it, each start is a full import (~0.8 s of
# CPU) and a cold first request, which under load showed as throughput halving for
# seconds at every recycle (README, "Benchmark").
preload_app = os.environ.get("GUNICORN_PRELOAD", "on").lower() not in {"0", "off", "false", "no"}
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = _number("GUNICORN_MAX_REQUESTS", default=10000)
max_requests_jitter = 1000
# Behind a proxy of ours only; the app decides what to trust from X-Forwarded-*.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket has one default path per user: several instances on
# one machine (tests, bench) would fight over it. Nothing here uses it. (gunicorn
# ignores unknown names in this file without a word: testing/tests/
# test_gunicorn_conf.py fails on any name it does not know.)
control_socket_disable = True

# The app logs one JSON access line per request itself (with the request id and the
# agent); gunicorn's own lines go out as JSON too, on stderr.
accesslog = None


class _AccessLoggedByTheApp(glogging.Logger):
    """gunicorn's logger without its access line. With logconfig_dict set, gunicorn
    builds every request's access-log atoms, only for the CRITICAL level below to
    drop them: CPU spent on every request for nothing."""

    def access(self, resp, req, environ, request_time):
        return None


logger_class = _AccessLoggedByTheApp
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "lithtrix.core.request_id.RequestIdLogFilter"}},
    "formatters": {"json": {"()": "lithtrix.core.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        # The app's lithtrix.access line replaces gunicorn's access line.
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
}


# /metrics with several workers: prometheus_client's multiprocess mode keeps each
# worker's samples in PROMETHEUS_MULTIPROC_DIR (README, Monitoring).
def on_starting(server):
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:  # a previous run's samples must not be added in
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
