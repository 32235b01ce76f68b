"""Logging: one JSON object per line on stderr (DJANGO_LOG_FORMAT=plain for people),
each with the request id; secrets are scrubbed by the formatter."""

import os

from lithtrix.settings.env import env_float

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "lithtrix.core.request_id.RequestIdLogFilter"},
        "dependency_outages": {"()": "lithtrix.core.outages.DependencyOutageLogFilter"},
    },
    "formatters": {
        "json": {"()": "lithtrix.core.logs.JsonFormatter"},
        "plain": {
            "()": "lithtrix.core.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": os.environ.get("DJANGO_LOG_FORMAT", "json"),
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # 4xx answers are the API working as designed; 5xx are logged with a request id.
        "django.request": {"level": "ERROR"},
        # One line per request (method, path, status, duration, agent id); off with WARNING.
        "lithtrix.access": {"level": os.environ.get("LITHTRIX_ACCESS_LOG_LEVEL", "INFO")},
        # Django's own console handler (debug only) would print each of its lines a
        # second time, unscrubbed: every django.* line goes through ours instead.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # The dev server's own line per request repeats the access line above, with
        # the query string in clear: off.
        "django.server": {"handlers": [], "level": "CRITICAL", "propagate": False},
        # The job worker (django-q2) logs each failed poll of its broker with a
        # traceback, every 10 s per process while the database is down: one warning
        # per outage interval instead (lithtrix/core/outages.py).
        "django-q": {"filters": ["dependency_outages"]},
    },
}

# A failing dependency (database, cache) is logged at most once per this many
# seconds per process, with the count of failures in between (lithtrix/core/outages.py).
LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS = env_float("LITHTRIX_OUTAGE_LOG_INTERVAL_SECONDS", 60)
