"""make serve's first step: every setting serving needs, checked before anything is touched.

    python deploy/serve_check.py

Names every missing or refused setting in one message on stderr, without a
traceback, and exits 2; prints nothing and exits 0 when the settings load.
Nothing is created, migrated or collected before it passes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

# The project's settings package, imported only once every required name is set.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# What gunicorn on several processes cannot go without, and what each looks like.
REQUIRED = {
    "DJANGO_SECRET_KEY": "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'",
    "DATABASE_URL": "postgres://user@host:5432/name",
    "REDIS_URL": "redis://host:6379/0, the rate limits every process shares",
    "EMAIL_URL": "smtp+tls://user:password@host:587, owner e-mail (or console:)",
}


def is_on(environ: Mapping[str, str], name: str) -> bool:
    # As lithtrix.settings.env.env_bool reads it (importing it would load every setting).
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def missing(environ: Mapping[str, str]) -> list[str]:
    """The required settings that are unset (DJANGO_DEBUG excuses the secret and Redis)."""
    excused = (
        {"DJANGO_SECRET_KEY", "REDIS_URL", "EMAIL_URL"} if is_on(environ, "DJANGO_DEBUG") else set()
    )
    if is_on(environ, "LITHTRIX_SINGLE_PROCESS"):
        excused.add("REDIS_URL")
    return [name for name in REQUIRED if name not in excused and not environ.get(name)]


def problems() -> list[str]:
    found = [f"{name} is not set ({REQUIRED[name]})" for name in missing(os.environ)]
    if found:
        return found
    # Everything present: the settings modules still check values (DATABASE_POOLING, ...).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lithtrix.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except (ImproperlyConfigured, ValueError) as exc:
        return [str(exc)]
    return bad_rates() + bad_gunicorn_numbers()


def bad_rates() -> list[str]:
    """Each rate variable whose value is not a rate (it would fail only at its first
    use, or at migrate with a traceback)."""
    from django.conf import settings

    from lithtrix.core.ratelimit import parse_rate

    found = []
    for scope, (name, _default) in settings.THROTTLE_RATE_VARIABLES.items():
        try:
            parse_rate(settings.THROTTLE_RATES[scope])
        except ValueError as exc:
            found.append(f"{name}: {exc}")
    return found


def bad_gunicorn_numbers() -> list[str]:
    """Each number deploy/gunicorn.conf.py will read that is not one it can use
    (gunicorn would stop on it with a traceback): the worker count it takes (WORKERS,
    else GUNICORN_WORKERS), threads when it runs gthread, the timeout and recycling."""
    from django.core.exceptions import ImproperlyConfigured

    from lithtrix.settings.env import env_int

    least: dict[str, int] = {}
    workers = next(
        (n for n in ("WORKERS", "GUNICORN_WORKERS") if os.environ.get(n, "").strip()), None
    )
    if workers:
        least[workers] = 1
    if os.environ.get("GUNICORN_WORKER_CLASS", "sync") == "gthread":
        least["GUNICORN_THREADS"] = 1
    least.update(GUNICORN_TIMEOUT=0, GUNICORN_MAX_REQUESTS=0)
    found = []
    for name, minimum in least.items():
        try:
            env_int(name, minimum, minimum=minimum)
        except ImproperlyConfigured as exc:
            found.append(str(exc))
    return found


def main() -> int:
    found = problems()
    if found:
        lines = "\n".join(f"  - {problem}" for problem in found)
        print(
            f"make serve: cannot start, set these first (see docs/configuration.md):\n{lines}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
