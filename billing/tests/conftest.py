"""Fixtures for billing's tests: metering and rate limits; Stripe (localstripe or recorded JSON)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from billing.payments import provisioning
from billing.payments.dev.localstripe_server import start_subprocess, stop_subprocess
from testing.servers import BlackHole


@pytest.fixture(autouse=True)
def _frozen_ratelimit_clock(ratelimit_clock):
    """Every metering test runs on the frozen rate-limit clock (root conftest)."""
    return ratelimit_clock


# --- Stripe ---------------------------------------------------------------------

TEST_SECRET_KEY = "sk_test_lithtrixTestSuite0123456789"
TEST_PUBLISHABLE_KEY = "pk_test_lithtrixTestSuite0123456789"
FIXTURES = Path(__file__).parent / "fixtures"
# Ids in the recorded JSON.
CUSTOMER = "cus_RLtxPro0Agent01"
SUBSCRIPTION = "sub_1RLtxProMonthly01"


def recorded(name: str) -> dict[str, Any]:
    """A recorded Stripe API object from billing/tests/fixtures/<name>.json (a fresh copy)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    process, url = start_subprocess()
    try:
        yield url
    finally:
        stop_subprocess(process)


def _configure(settings, *, api_base: str, price_id: str = "") -> None:
    settings.STRIPE_SECRET_KEY = TEST_SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = TEST_PUBLISHABLE_KEY
    settings.STRIPE_PRO_PRICE_ID = price_id
    settings.STRIPE_API_BASE = api_base
    provisioning.local_stripe_account_ensure(secret_key=TEST_SECRET_KEY)


@pytest.fixture
def local_stripe(settings, db, localstripe_url) -> str:
    """Billing configured against the session's localstripe, emptied for this test."""
    reset = urllib.request.Request(f"{localstripe_url}/_config/data", method="DELETE")  # noqa: S310
    urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - loopback http
    _configure(settings, api_base=localstripe_url)
    return localstripe_url


LOCAL_PRO_PLAN = "price_lithtrix_pro_monthly"


@pytest.fixture
def local_stripe_pro(local_stripe, settings) -> str:
    """localstripe with the monthly Pro plan as STRIPE_PRO_PRICE_ID (what `make run` sets)."""
    settings.STRIPE_PRO_PRICE_ID = provisioning.local_pro_plan_ensure(plan_id=LOCAL_PRO_PLAN)
    return local_stripe


@pytest.fixture
def black_hole() -> Iterator[str]:
    """The URL of a loopback port that accepts connections and never answers (Stripe hanging)."""
    hole = BlackHole()
    try:
        yield hole.url
    finally:
        hole.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RecordedStripe(stripe.HTTPClient):
    """stripe-python's HTTP client answering from recorded Stripe JSON.

    ``objects`` holds Stripe objects by id (GET /v1/<kind>/<id> returns them);
    ``routes`` maps (METHOD, path) to a callable(params) -> (status, body) for the
    calls that create or change something. Every request is kept in ``calls``.
    """

    name = "recorded"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, Any]] = {}
        self.routes: dict[tuple[str, str], Any] = {}
        self.calls: list[tuple[str, str, dict[str, list[str]]]] = []
        self.idempotency_keys: list[tuple[str, str | None]] = []

    def add(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            self.objects[obj["id"]] = obj

    def calls_to(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.calls if m == method and p == path)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        parts = urlsplit(url)
        params = parse_qs(post_data or parts.query)
        self.calls.append((method.upper(), parts.path, params))
        if method.lower() == "post":
            self.idempotency_keys.append((parts.path, (headers or {}).get("Idempotency-Key")))
        route = self.routes.get((method.upper(), parts.path))
        if route is not None:
            status, body = route(params)
        elif method.lower() == "get" and parts.path.rsplit("/", 1)[-1] in self.objects:
            status, body = 200, self.objects[parts.path.rsplit("/", 1)[-1]]
        else:
            status, body = (
                404,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such object: {parts.path}",
                    }
                },
            )
        return json.dumps(body), status, {"Request-Id": "req_recorded"}

    def close(self) -> None:
        pass


@pytest.fixture
def recorded_stripe(settings, db, monkeypatch) -> RecordedStripe:
    """Billing against recorded Stripe JSON (for subscriptions: localstripe has no Prices)."""
    _configure(settings, api_base="https://api.stripe.test", price_id="price_1QproMonthlyLithtrix")
    client = RecordedStripe()
    monkeypatch.setattr(stripe, "default_http_client", client)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    return client


@pytest.fixture
def stripe_account(recorded_stripe, registered):
    """Recorded Stripe answers for `registered`'s customer, card and Pro subscription."""
    agent_id = str(registered.agent.pk)
    customer = recorded("customer")
    customer["metadata"]["agent_id"] = agent_id
    payment_method = recorded("payment_method")
    recorded_stripe.add(customer, payment_method, recorded("product"))
    subscriptions: list[dict] = []

    def create_subscription(params):
        subscription = recorded("subscription")
        subscription["metadata"]["agent_id"] = agent_id
        subscriptions.append(subscription)
        recorded_stripe.add(subscription)
        return 200, subscription

    recorded_stripe.routes.update(
        {
            ("POST", "/v1/customers"): lambda params: (200, customer),
            ("POST", "/v1/payment_methods/pm_card_visa/attach"): lambda p: (200, payment_method),
            ("POST", f"/v1/customers/{CUSTOMER}"): lambda params: (200, customer),
            ("GET", "/v1/subscriptions"): lambda params: (
                200,
                {
                    "object": "list",
                    "data": subscriptions,
                    "has_more": False,
                    "url": "/v1/subscriptions",
                },
            ),
            ("POST", "/v1/subscriptions"): create_subscription,
        }
    )
    recorded_stripe.subscriptions = subscriptions
    return recorded_stripe
