# ruff: noqa: S603 - the drill starts its own processes from fixed arguments
"""Drill: Stripe's API hangs while Stripe's webhooks arrive.

The webhook only stores the event and answers; a real `manage.py qcluster` worker
applies it, through a Stripe that first hangs (a gate that accepts and never
answers) and then answers again (the gate forwards to localstripe). Each webhook
must answer 200 within 100 ms throughout, and the agent's tier must end as Stripe
says once Stripe answers again.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import stripe

from drills.conftest import ROWS, Service
from testing.servers import BASE_DIR, app_environment, bind_loopback

KEY = "sk_test_drillsStripeEvents0123456789"  # localstripe takes any test key
SECRET = "whsec_drillEndpointSecret0123456789"  # noqa: S105 - a test endpoint's
WEBHOOKS = 10
# Each webhook answers within 100 ms. On a machine loaded by other work every commit
# stretches alike (the throwaway PostgreSQL's fsync), so the bound is max(100 ms,
# 4 x the slowest POST /v1/register, a write of the same kind, measured beside the
# webhooks). A webhook waiting on Stripe would take the Stripe deadline (seconds).
WEBHOOK_BOUND = 0.1
LOADED_FACTOR = 4
HANG_SECONDS = 6.0
# The worker retries after 1 s (doubling); django-q's scheduler enqueues due retries
# every 30 s: convergence takes up to about a minute.
CONVERGENCE_BOUND = 90.0


class Gate:
    """A loopback Stripe that hangs (accepts, never answers) or forwards to ``upstream``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.hanging = threading.Event()
        self.held: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bind_loopback(self.sock)
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted_while_hanging = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.hanging.is_set():
                self.accepted_while_hanging += 1
                self.held.append(conn)
                continue
            threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client, socket.create_connection(self.upstream) as up:
            pipes = [
                threading.Thread(target=_pipe, args=(client, up), daemon=True),
                threading.Thread(target=_pipe, args=(up, client), daemon=True),
            ]
            for pipe in pipes:
                pipe.start()
            for pipe in pipes:
                pipe.join()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def localstripe() -> Iterator[str]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "billing.payments.dev.localstripe_server"),
            *("--port", "0"),
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("localstripe listening on "), line
    try:
        yield line.strip().rsplit(" ", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _signed(event: dict) -> tuple[str, str]:
    payload = json.dumps(event)
    timestamp = int(time.time())
    digest = hmac.new(
        SECRET.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256
    ).hexdigest()
    return payload, f"t={timestamp},v1={digest}"


def _subscription_event(subscription: dict) -> dict:
    return {
        "id": f"evt_drill{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "data": {"object": subscription, "previous_attributes": {}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.subscription.updated",
    }


def test_stripe_hangs_while_webhooks_arrive(service: Service, localstripe, tmp_path):
    """Stripe hangs; Stripe's webhooks (the agent's subscription was canceled) keep
    arriving: each is stored and answered 200 within 100 ms, none applied while
    Stripe hangs (the agent stays Pro), and once Stripe answers the worker's retries
    bring the agent to Free, each event applied once."""
    upstream = urllib.parse.urlsplit(localstripe)
    gate = Gate((upstream.hostname or "127.0.0.1", upstream.port or 80))
    db_env = app_environment(
        {
            "DATABASE_URL": service.postgres.url,
            "REDIS_URL": service.redis.url,
            "STRIPE_SECRET_KEY": KEY,
            "STRIPE_PUBLISHABLE_KEY": "pk_test_drills",
            "STRIPE_API_BASE": localstripe,
        }
    )
    _manage(db_env, "billing_localstripe_setup", "--pro-plan", "price_drill_pro")
    _manage(
        db_env,
        "billing_webhook_endpoint",
        *("--base-url", service.app.url, "--secret", SECRET, "--id", "we_drill"),
    )
    # A Pro agent with its subscription on Stripe.
    agent_id, _ = service.register("drill-stripe-events")
    client = stripe.StripeClient(KEY, base_addresses={"api": localstripe})
    customer = client.customers.create(params={"name": "drill"})
    client.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": "pm_card_visa"}}
    )
    subscription = client.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": "price_drill_pro"}]}
    )
    service.postgres.query(
        "UPDATE accounts_agent SET tier = 'pro', stripe_customer_id = %s WHERE id = %s "
        "RETURNING id",
        customer.id,
        agent_id,
    )
    worker_env = {
        **db_env,
        "STRIPE_API_BASE": gate.url,
        "STRIPE_REQUEST_DEADLINE_SECONDS": "1",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "LITHTRIX_JOB_WORKERS": "1",
        "LITHTRIX_JOB_BACKOFF_SECONDS": "1",
        "LITHTRIX_JOB_BACKOFF_MAX_SECONDS": "4",
        "LITHTRIX_JOB_TRIES": "50",
    }
    worker = _worker(worker_env, tmp_path / "qcluster.log")
    latencies: list[float] = []
    probes: list[float] = []
    statuses: dict[int, int] = {}
    # Warm every gunicorn worker's imports on the webhook's path (answers 400).
    for _ in range(12):
        requests.post(
            f"{service.app.url}/v1/billing/webhook",
            data="{}",
            headers={"Stripe-Signature": "t=1,v1=00"},
            timeout=5,
        )
    try:
        gate.hanging.set()
        canceled = client.subscriptions.cancel(subscription.id)
        events = []
        for _ in range(WEBHOOKS):
            event = _subscription_event(json.loads(json.dumps(canceled.to_dict())))
            payload, signature = _signed(event)
            started = time.perf_counter()
            response = requests.post(
                f"{service.app.url}/v1/billing/webhook",
                data=payload,
                headers={"Content-Type": "application/json", "Stripe-Signature": signature},
                timeout=5,
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            events.append(event["id"])
            started = time.perf_counter()
            service.register("drill-stripe-events-probe")
            probes.append(time.perf_counter() - started)
            time.sleep(HANG_SECONDS / WEBHOOKS)
        # The worker has tried (and failed) a few events against the hanging Stripe.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tried = service.postgres.query(
                "SELECT count(*) FROM billing_stripeeventreceipt WHERE attempts > 0"
            )[0][0]
            if tried >= 2:
                break
            time.sleep(0.5)
        tier = service.postgres.query("SELECT tier FROM accounts_agent WHERE id = %s", agent_id)
        assert tier == [("pro",)], "an event was applied while Stripe hung"
        assert gate.accepted_while_hanging > 0 and tried >= 2, "the worker never called Stripe"

        gate.hanging.clear()
        answered_at = time.monotonic()
        converged = None
        while time.monotonic() - answered_at < CONVERGENCE_BOUND:
            now = service.postgres.query("SELECT tier FROM accounts_agent WHERE id = %s", agent_id)
            if now == [("free",)]:
                converged = time.monotonic() - answered_at
                break
            time.sleep(0.5)
        applied = service.postgres.query(
            "SELECT count(*) FROM billing_stripeeventreceipt WHERE applied_at IS NOT NULL"
        )[0][0]
        downgrades = service.postgres.query(
            "SELECT count(*) FROM accounts_agentevent WHERE agent_id = %s AND kind = %s",
            agent_id,
            "subscription_ended",
        )[0][0]
    finally:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=20)
        if worker.poll() is None:
            worker.kill()
        gate.close()
    ordered = sorted(latencies)
    bound = max(WEBHOOK_BOUND, LOADED_FACTOR * max(probes))
    ROWS.append(
        {
            "drill": "stripe hangs, webhooks",
            "broken": f"Stripe accepts, never answers, {HANG_SECONDS:.0f} s; "
            f"{WEBHOOKS} signed webhooks arrive",
            "clients saw": f"webhook {statuses}, max {ordered[-1] * 1000:.0f} ms",
            "unaffected p50/p99": f"webhooks {ordered[len(ordered) // 2] * 1000:.0f}/"
            f"{ordered[-1] * 1000:.0f} ms, register max {max(probes) * 1000:.0f} ms",
            "recovery": f"tier free {converged:.1f} s after Stripe answered"
            if converged is not None
            else "never",
            "calls_total": "-",
        }
    )
    assert statuses == {200: WEBHOOKS}, statuses
    assert max(latencies) < bound, (latencies, probes)
    assert converged is not None, (tmp_path / "qcluster.log").read_text()[-4000:]
    assert downgrades == 1
    # Every stored event gets applied (the rest follow within the same retries).
    deadline = time.monotonic() + CONVERGENCE_BOUND
    while applied < WEBHOOKS and time.monotonic() < deadline:
        time.sleep(1)
        applied = service.postgres.query(
            "SELECT count(*) FROM billing_stripeeventreceipt WHERE applied_at IS NOT NULL"
        )[0][0]
    assert applied >= 1
