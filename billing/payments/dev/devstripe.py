"""`make run`'s Stripe: localstripe on loopback unless Stripe is configured.

    python -m billing.payments.dev.devstripe [--migrate] COMMAND...
    (make run: python -m billing.payments.dev.devstripe --migrate .venv/bin/python
     manage.py runserver --noreload --skip-checks HOST:PORT)

--migrate: `manage.py migrate` first, in the same Django process as the localstripe
set-up below (one start of Django, with its system checks, instead of two).

- Any of STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY or STRIPE_API_BASE set: runs
  COMMAND unchanged; nothing local starts and only the configured Stripe is called.
- LITHTRIX_LOCAL_STRIPE=off: the same (billing then answers 503 BILLING_UNAVAILABLE).
- Otherwise: starts localstripe on 127.0.0.1 (a free port, fresh in-memory state),
  gives COMMAND test keys and STRIPE_API_BASE, prepares dj-stripe's Account/APIKey
  rows, a monthly Pro plan (STRIPE_PRO_PRICE_ID, so Pro is a real subscription;
  set STRIPE_PRO_PRICE_ID= empty for card-on-file Pro) and a webhook from
  localstripe to COMMAND's HOST:PORT, runs COMMAND, and stops localstripe when
  COMMAND ends.

Once COMMAND listens on HOST:PORT, one plain line gives the local URLs (API, docs,
admin, localstripe): "Serving: API http://127.0.0.1:8000/v1/capabilities · docs ... · Stripe: ...".
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import NoReturn

from billing.payments.dev.localstripe_server import start_subprocess, stop_subprocess

LOCAL_SECRET_KEY = "sk_test_lithtrixLocalDevelopment0000"  # noqa: S105 - for localstripe only
LOCAL_PUBLISHABLE_KEY = "pk_test_lithtrixLocalDevelopment0000"
LOCAL_PRO_PLAN_ID = "price_lithtrix_pro_monthly"
STRIPE_VARIABLES = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_API_BASE")
# migrate, then the management command in argv (if any), in one Django process.
PREPARE = (
    "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'lithtrix.settings'); "
    "import django; django.setup(); from django.core.management import call_command; "
    "call_command('migrate', interactive=False); "
    "sys.argv[1:] and call_command(*sys.argv[1:])"
)


def _address(command: list[str]) -> str | None:
    """HOST:PORT from runserver's address argument."""
    for arg in reversed(command):
        if re.fullmatch(r"[\w.-]+:\d+", arg):
            return arg
    return None


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


def _listening(address: str, child: subprocess.Popen, timeout: float = 120.0) -> bool:
    """True once COMMAND accepts connections on HOST:PORT; False if it ends first."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, int(port))) == 0:
                return True
        time.sleep(0.1)
    return False


def _prepare(migrate: bool) -> list[str]:
    """The arguments to the interpreter that run a management command, migrating first."""
    return ["-c", PREPARE] if migrate else ["manage.py"]


def urls_line(address: str, stripe: str) -> str:
    """The one plain line a reader needs from make run's output."""
    base = f"http://{address}"
    return (
        f"Serving: API {base}/v1/capabilities · docs {base}/v1/docs · admin {base}/admin/"
        f" · {stripe}"
    )


def main(command: list[str]) -> int:
    migrate = bool(command) and command[0] == "--migrate"
    command = command[1:] if migrate else command
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    configured = any(os.environ.get(name) for name in STRIPE_VARIABLES)
    off = os.environ.get("LITHTRIX_LOCAL_STRIPE", "").lower() in {"off", "0", "no"}
    address = _address(command)

    signal.signal(signal.SIGTERM, _terminate)
    localstripe = child = None
    env = dict(os.environ)
    stripe = "Stripe as configured (STRIPE_*)" if configured else "no Stripe (billing answers 503)"
    try:
        if not (configured or off):
            localstripe, api_base = start_subprocess()
            env.update(
                STRIPE_SECRET_KEY=LOCAL_SECRET_KEY,
                STRIPE_PUBLISHABLE_KEY=LOCAL_PUBLISHABLE_KEY,
                STRIPE_API_BASE=api_base,
            )
            env.setdefault("STRIPE_PRO_PRICE_ID", LOCAL_PRO_PLAN_ID)
            setup = [sys.executable, *_prepare(migrate), "billing_localstripe_setup"]
            if env["STRIPE_PRO_PRICE_ID"]:
                setup += ["--pro-plan", env["STRIPE_PRO_PRICE_ID"]]
            if address:
                setup += ["--webhook-url", f"http://{address}/v1/billing/webhook"]
            subprocess.run(setup, env=env, check=True)  # noqa: S603
            pro = env["STRIPE_PRO_PRICE_ID"] or "none: card-on-file Pro"
            stripe = (
                f"Stripe: localstripe at {api_base} (test keys; pm_card_visa works, "
                f"pm_card_visa_chargeDeclined declines; Pro plan {pro}; set STRIPE_* for Stripe)"
            )
        elif migrate:
            subprocess.run([sys.executable, *_prepare(migrate)], env=env, check=True)  # noqa: S603
        child = subprocess.Popen(command, env=env)  # noqa: S603 - the developer's own command
        if address and _listening(address, child):
            print(urls_line(address, stripe), flush=True)
        return child.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if localstripe is not None:
            stop_subprocess(localstripe)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
