"""Stripe and dj-stripe (billing/payments/stripe_client.py talks to Stripe).

Without STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY billing answers 503
BILLING_UNAVAILABLE. `make run` with no STRIPE_* variables starts localstripe on
loopback and sets them (billing/payments/dev/devstripe.py).
"""

import os

from lithtrix.settings.env import env_float, env_int

STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_PUBLIC_KEY = STRIPE_PUBLISHABLE_KEY  # the name dj-stripe reads
# Base URL of a Stripe-compatible server (localstripe); empty means Stripe's own.
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
# Price of the Pro subscription; empty means Pro is card-on-file without a subscription.
STRIPE_PRO_PRICE_ID = os.environ.get("STRIPE_PRO_PRICE_ID", "")
STRIPE_CONNECT_TIMEOUT_SECONDS = env_float("STRIPE_CONNECT_TIMEOUT_SECONDS", 5)
STRIPE_TIMEOUT_SECONDS = env_float("STRIPE_TIMEOUT_SECONDS", 20)
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
# One budget for all Stripe calls of one request, retries included; keep it well
# under gunicorn's worker timeout (30 s). Past it: 502, nothing changed.
STRIPE_REQUEST_DEADLINE_SECONDS = env_float("STRIPE_REQUEST_DEADLINE_SECONDS", 10)
# How long a billing request waits for another one of the same agent (setup, cancel,
# deletion) before answering 409 BILLING_IN_PROGRESS.
STRIPE_BILLING_LOCK_WAIT_SECONDS = env_float("STRIPE_BILLING_LOCK_WAIT_SECONDS", 3)
# Billing actions waiting on Stripe at once, in the whole deployment; the next is
# answered 503 at once. A sync worker waiting on Stripe serves nobody: keep it below
# one host's workers so a Stripe that hangs never holds them all. 0: no bound.
LITHTRIX_STRIPE_CALL_SLOTS = env_int("LITHTRIX_STRIPE_CALL_SLOTS", 2)
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
# dj-stripe's schema from the project's own squashed migration (see README,
# "dj-stripe's migrations"): a fresh database is created in seconds instead of
# replaying 519 RemoveField operations; it replaces dj-stripe's own 0001-0003.
MIGRATION_MODULES = {"djstripe": "billing.djstripe_migrations"}
