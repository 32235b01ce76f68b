"""`make run`'s Stripe: localstripe on loopback unless Stripe is configured.

    python -m billing.payments.dev.devstripe COMMAND...
    (make run: python -m billing.payments.dev.devstripe .venv/bin/python manage.py runserver ...)

- Any of STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY or STRIPE_API_BASE set: runs
  COMMAND unchanged; nothing local starts and only the configured Stripe is called.
- LITHTRIX_LOCAL_STRIPE=off: the same (billing then answers 503 BILLING_UNAVAILABLE).
- Otherwise: starts localstripe on 127.0.0.1 (a free port, fresh in-memory state),
  gives COMMAND test keys and STRIPE_API_BASE, prepares dj-stripe's Account/APIKey
  rows, a monthly Pro plan (STRIPE_PRO_PRICE_ID, so Pro is a real subscription;
  set STRIPE_PRO_PRICE_ID= empty for card-on-file Pro) and a webhook from
  localstripe to COMMAND's HOST:PORT, runs COMMAND, and stops localstripe when
  COMMAND ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from types import FrameType
from typing import NoReturn

from billing.payments.dev.localstripe_server import start_subprocess, stop_subprocess

LOCAL_SECRET_KEY = "sk_test_lithtrixLocalDevelopment0000"  # noqa: S105 - for localstripe only
LOCAL_PUBLISHABLE_KEY = "pk_test_lithtrixLocalDevelopment0000"
LOCAL_PRO_PLAN_ID = "price_lithtrix_pro_monthly"
STRIPE_VARIABLES = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_API_BASE")


def _webhook_url(command: list[str]) -> str | None:
    """http://HOST:PORT/v1/billing/webhook from runserver's address argument."""
    for arg in reversed(command):
        if re.fullmatch(r"[\w.-]+:\d+", arg):
            return f"http://{arg}/v1/billing/webhook"
    return None


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    configured = any(os.environ.get(name) for name in STRIPE_VARIABLES)
    if configured or os.environ.get("LITHTRIX_LOCAL_STRIPE", "").lower() in {"off", "0", "no"}:
        return subprocess.call(command)  # noqa: S603 - the developer's own command

    signal.signal(signal.SIGTERM, _terminate)
    localstripe, api_base = start_subprocess()
    child = None
    try:
        env = {
            **os.environ,
            "STRIPE_SECRET_KEY": LOCAL_SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": LOCAL_PUBLISHABLE_KEY,
            "STRIPE_API_BASE": api_base,
        }
        env.setdefault("STRIPE_PRO_PRICE_ID", LOCAL_PRO_PLAN_ID)
        setup = [sys.executable, "manage.py", "billing_localstripe_setup"]
        if env["STRIPE_PRO_PRICE_ID"]:
            setup += ["--pro-plan", env["STRIPE_PRO_PRICE_ID"]]
        webhook_url = _webhook_url(command)
        if webhook_url:
            setup += ["--webhook-url", webhook_url]
        subprocess.run(setup, env=env, check=True)  # noqa: S603
        pro = env["STRIPE_PRO_PRICE_ID"] or "none: card-on-file Pro"
        print(
            f"Stripe: localstripe at {api_base} (test keys; pm_card_visa works, "
            f"pm_card_visa_chargeDeclined declines; Pro plan {pro}). "
            "Set STRIPE_* to use Stripe.",
            flush=True,
        )
        child = subprocess.Popen(command, env=env)  # noqa: S603
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
        stop_subprocess(localstripe)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
