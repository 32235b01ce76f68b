"""deploy/nginx/metering.conf, run by a real nginx in front of a product API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from accounts.models import Agent
from billing.tests.helpers import set_calls_total
from keys.crypto import generate_key
from testing.nginx import start_nginx
from testing.servers import free_port, session_from

# Servers or Python in subprocesses, or a browser: seconds each, not milliseconds.
pytestmark = pytest.mark.slow


class _ProductApi(BaseHTTPRequestHandler):
    """Stands for any product API: says what reached it."""

    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "agent_id": self.headers.get("X-Agent-Id"),
                "agent_tier": self.headers.get("X-Agent-Tier"),
                "calls_remaining": self.headers.get("X-Calls-Remaining"),
                "body": body,
            }
        )
        payload = json.dumps({"product": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gateway(live_server, tmp_path):
    """nginx on a free port: /v1/authorize on live_server, the product behind it."""
    product = ThreadingHTTPServer(("127.0.0.1", free_port()), _ProductApi)
    _ProductApi.seen = []
    threading.Thread(target=product.serve_forever, daemon=True).start()
    process, url = start_nginx(tmp_path, live_server.url, product.server_port)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        product.shutdown()
        product.server_close()


def _calls_total(agent: Agent) -> int:
    return Agent.objects.get(pk=agent.pk).calls_total


@pytest.mark.django_db(transaction=True)
def test_allowed_call_reaches_the_product_with_the_agent_from_lithtrix(gateway, registered):
    response = requests.post(
        gateway + "/search?q=1",
        data=b'{"query": "x"}',
        headers={
            "Authorization": f"Bearer {registered.api_key}",
            "X-Agent-Id": "someone-else",  # spoofing is overwritten
            "X-Calls-Remaining": "1000000",
            "Content-Type": "application/json",
        },
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json() == {"product": "ok"}
    assert (response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]) == (
        "60",
        "59",
    )
    assert _ProductApi.seen == [
        {
            "method": "POST",
            "path": "/search?q=1",
            "agent_id": str(registered.agent.pk),
            "agent_tier": "free",
            "calls_remaining": "299",
            "body": '{"query": "x"}',
        }
    ]
    assert response.headers["X-Calls-Remaining"] == "299"
    assert _calls_total(registered.agent) == 1


@pytest.mark.django_db(transaction=True)
def test_bad_key_is_401_with_the_envelope(gateway, registered, api_client):
    response = requests.get(gateway + "/search", timeout=10)

    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == api_client.get("/v1/authorize").json()
    assert _ProductApi.seen == []


@pytest.mark.django_db(transaction=True)
def test_over_the_cap_is_402_with_the_upgrade_url(gateway, registered, api_client):
    set_calls_total(registered.agent, 300)
    auth = {"Authorization": f"Bearer {registered.api_key}"}

    response = requests.get(gateway + "/search", headers=auth, timeout=10)

    assert response.status_code == 402
    assert response.headers["Content-Type"] == "application/json"
    direct = api_client.get("/v1/authorize", HTTP_AUTHORIZATION=auth["Authorization"])
    assert response.json() == direct.json()
    assert response.json()["upgrade_url"] == "/v1/billing/setup"
    assert response.headers["RateLimit-Limit"] == "60"
    assert response.headers["RateLimit-Remaining"] == "59"
    assert _ProductApi.seen == []
    assert _calls_total(registered.agent) == 300


@pytest.mark.django_db(transaction=True)
def test_rate_limited_call_is_429_with_retry_after(
    gateway,
    registered,
    api_client,
    settings,
    ratelimit_clock,
    throttle_rates,
):
    throttle_rates(agent_free="2/m")
    auth = {"Authorization": f"Bearer {registered.api_key}"}
    for _ in range(2):
        assert requests.get(gateway + "/search", headers=auth, timeout=10).status_code == 200

    response = requests.get(gateway + "/search", headers=auth, timeout=10)

    assert response.status_code == 429
    direct = api_client.get("/v1/authorize", HTTP_AUTHORIZATION=auth["Authorization"])
    assert response.json() == direct.json()
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Retry-After"] == response.headers["RateLimit-Reset"]
    assert (response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]) == (
        "2",
        "0",
    )
    assert len(_ProductApi.seen) == 2
    assert _calls_total(registered.agent) == 2


@pytest.mark.django_db(transaction=True)
def test_a_pro_agents_call_reaches_the_product_without_calls_remaining(gateway, registered):
    from accounts.services import agent_set_tier

    agent_set_tier(agent=registered.agent, tier="pro")
    response = requests.get(
        gateway + "/search",
        headers={"Authorization": f"Bearer {registered.api_key}", "X-Calls-Remaining": "5"},
        timeout=10,
    )

    assert response.status_code == 200
    assert "X-Calls-Remaining" not in response.headers
    assert _ProductApi.seen[-1]["agent_tier"] == "pro"
    assert _ProductApi.seen[-1]["calls_remaining"] is None  # the client's copy is dropped


@pytest.mark.django_db(transaction=True)
def test_junk_keys_from_one_client_do_not_lock_out_the_others(
    gateway,
    registered,
    settings,
    ratelimit_clock,
    throttle_rates,
):
    """The gateway tells Lithtrix who its client is: the failed-authentication limit
    is per client, not one bucket for everyone behind the gateway."""
    throttle_rates(auth_failures="5/m")
    settings.LITHTRIX_TRUSTED_PROXIES = ["127.0.0.1"]
    spammer, other = session_from("127.0.0.2"), session_from("127.0.0.3")
    junk = [f"Bearer {generate_key().key}" for _ in range(20)]

    statuses = [
        spammer.get(gateway + "/search", headers={"Authorization": key}, timeout=10).status_code
        for key in junk
    ]
    response = other.get(
        gateway + "/search", headers={"Authorization": f"Bearer {registered.api_key}"}, timeout=10
    )

    # The spammer is locked out itself...
    assert statuses[:5] == [401] * 5
    assert set(statuses[6:]) == {429}
    # ...and the other client's key, never seen before, still goes through.
    assert response.status_code == 200, response.text
    assert response.json() == {"product": "ok"}
    assert [seen["agent_id"] for seen in _ProductApi.seen] == [str(registered.agent.pk)]
