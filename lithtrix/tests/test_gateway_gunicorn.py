"""The production shape end to end: client -> nginx (deploy/nginx/metering.conf,
auth_request) -> product API, with /v1/authorize served by gunicorn's 4 workers on
PostgreSQL and Redis. Under concurrent load every call that reaches the product is
counted exactly once, and every refused call neither reaches it nor is counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from accounts.models import Agent
from billing.models import DailyUsage
from lithtrix.tests.test_multiprocess_limits import server_env
from testing.nginx import start_nginx
from testing.servers import EXACT_COUNT_TIMEOUT, burst, running_gunicorn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_postgres,
    pytest.mark.django_db(transaction=True),
]


class ProductApi(BaseHTTPRequestHandler):
    """Any product API: records the agent each call arrived with."""

    seen: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append((self.path, self.headers.get("X-Agent-Id")))
        payload = b'{"product": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def product():
    ProductApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ProductApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def through_gateway(tmp_path, env, product, run):
    with running_gunicorn(workers=4, env=env, log_path=tmp_path / "gunicorn.log") as app:
        nginx, gateway = start_nginx(tmp_path, app.url, product.server_port, workers=2)
        try:
            return run(gateway)
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)


def test_concurrent_calls_over_the_free_cap(redis_url, registered, product, tmp_path):
    env = server_env(redis_url, LITHTRIX_FREE_CALL_LIMIT="20", LITHTRIX_FREE_RATE="10000/m")
    headers = {"Authorization": f"Bearer {registered.api_key}", "X-Agent-Id": "spoofed"}

    def run(gateway):
        refused = requests.get(f"{gateway}/search", headers={"X-Agent-Id": "spoofed"}, timeout=10)
        return refused, burst(f"{gateway}/search?q=1", headers, 50, concurrency=24)

    refused, responses = through_gateway(tmp_path, env, product, run)

    assert refused.status_code == 401
    assert refused.json()["error_code"] == "INVALID_API_KEY"
    assert Counter(r.status_code for r in responses) == {200: 20, 402: 30}
    for response in responses:
        if response.status_code == 200:
            assert response.json() == {"product": "ok"}
        else:
            assert response.json()["error_code"] == "OVER_LIMIT"
            assert response.json()["upgrade_url"] == "/v1/billing/setup"
    # Exactly the allowed calls reached the product, each as the agent Lithtrix named.
    assert ProductApi.seen == [("/search?q=1", str(registered.agent.pk))] * 20
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.calls_total == 20
    assert DailyUsage.objects.get(agent=agent).calls == 20


def test_concurrent_calls_over_the_rate_limit(redis_url, registered, product, tmp_path):
    # A daily window: the burst cannot straddle its end (a minute's could).
    env = server_env(redis_url, LITHTRIX_FREE_RATE="15/d", **EXACT_COUNT_TIMEOUT)
    headers = {"Authorization": f"Bearer {registered.api_key}"}

    def run(gateway):
        first = requests.get(f"{gateway}/search", headers=headers, timeout=10)
        return [first, *burst(f"{gateway}/search", headers, 39, concurrency=24)]

    responses = through_gateway(tmp_path, env, product, run)

    assert Counter(r.status_code for r in responses) == {200: 15, 429: 25}
    for response in responses:
        assert response.headers["RateLimit-Limit"] == "15"
        if response.status_code == 429:
            assert response.json()["error_code"] == "RATE_LIMIT_EXCEEDED"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["RateLimit-Remaining"] == "0"
    assert len(ProductApi.seen) == 15
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 15
