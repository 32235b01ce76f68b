"""GET /metrics: Prometheus text, to allowed networks or with the bearer token."""

from __future__ import annotations

import re

import pytest

from lithtrix.core.metrics import observe_stripe_call
from lithtrix.tests.test_deploy_settings import PRODUCTION, run_manage
from testing.assertions import assert_envelope


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(client, **extra) -> str:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


@pytest.mark.django_db
def test_requests_metering_and_refusals_are_counted(api_client, registered, settings):
    settings.LITHTRIX_FREE_CALL_LIMIT = 1
    before = scrape(api_client)
    api_client.get("/v1/me", **registered.auth)
    api_client.get("/v1/authorize", **registered.auth)
    api_client.get("/v1/authorize", **registered.auth)
    after = scrape(api_client)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    me_200 = {"endpoint": "/v1/me", "method": "GET", "status": "200"}
    authorize_402 = {"endpoint": "/v1/authorize", "method": "GET", "status": "402"}
    assert delta("lithtrix_http_requests_total", **me_200) == 1
    assert delta("lithtrix_http_requests_total", **authorize_402) == 1
    assert delta("lithtrix_metered_calls_total", outcome="allowed") == 1
    assert delta("lithtrix_metered_calls_total", outcome="over_limit") == 1
    assert delta("lithtrix_http_request_duration_seconds_count", endpoint="/v1/me") == 1


@pytest.mark.django_db
def test_unknown_paths_share_one_label(api_client):
    before = scrape(api_client)
    for n in range(3):
        api_client.get(f"/v1/made-up/{n}")
    after = scrape(api_client)
    assert "made-up" not in after
    labels = {"endpoint": "unrouted", "method": "GET", "status": "404"}
    counted = sample(after, "lithtrix_http_requests_total", **labels)
    assert counted - sample(before, "lithtrix_http_requests_total", **labels) == 3


@pytest.mark.django_db
def test_rate_limit_refusals_and_stripe_calls_are_counted(
    api_client, registered, settings, throttle_rates
):
    throttle_rates(agent_free="1/m")
    before = scrape(api_client)
    api_client.get("/v1/me", **registered.auth)
    api_client.get("/v1/me", **registered.auth)
    observe_stripe_call("5xx", 0.2)
    after = scrape(api_client)

    assert (
        sample(after, "lithtrix_rate_limit_refusals_total", bucket="agent_free")
        - sample(before, "lithtrix_rate_limit_refusals_total", bucket="agent_free")
        == 1
    )
    assert (
        sample(after, "lithtrix_stripe_calls_total", outcome="5xx")
        - sample(before, "lithtrix_stripe_calls_total", outcome="5xx")
        == 1
    )
    assert "lithtrix_stripe_call_duration_seconds_bucket" in after


@pytest.mark.django_db
def test_other_networks_are_told_nothing_is_there(api_client):
    response = api_client.get("/metrics", REMOTE_ADDR="203.0.113.5")
    assert_envelope(response, 404, "NOT_FOUND")


@pytest.mark.django_db
def test_the_token_opens_it_from_anywhere(api_client, settings):
    settings.LITHTRIX_METRICS_TOKEN = "scrape-token-0123456789"
    text = scrape(
        api_client, REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789"
    )
    assert "lithtrix_http_requests_total" in text
    wrong = api_client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer no")
    assert_envelope(wrong, 403, "FORBIDDEN")


@pytest.mark.django_db
def test_configured_networks_and_any_host(api_client, settings):
    settings.LITHTRIX_METRICS_ALLOWED_NETWORKS = "10.0.0.0/8"
    assert scrape(api_client, REMOTE_ADDR="10.2.3.4", HTTP_HOST="10.0.0.1:8000")
    assert_envelope(api_client.get("/metrics"), 404, "NOT_FOUND")  # 127.0.0.1 no longer


@pytest.mark.django_db
def test_dependency_failures_are_counted(api_client, registered, monkeypatch):
    from django.db import OperationalError

    def refuse(**kwargs):
        raise OperationalError("down")

    before = scrape(api_client)
    monkeypatch.setattr("keys.selectors.working_api_key_with_agent_by_hash", refuse)
    api_client.get("/v1/me", **registered.auth)
    after = scrape(api_client)
    assert (
        sample(after, "lithtrix_dependency_failures_total", dependency="database")
        - sample(before, "lithtrix_dependency_failures_total", dependency="database")
        == 1
    )


def test_a_missing_multiprocess_directory_is_created_before_anything_writes_to_it(tmp_path):
    # make serve runs collectstatic (and migrate) before gunicorn's on_starting; a
    # systemd unit's ExecStartPre does the same, on a /run directory empty at boot.
    directory = tmp_path / "run" / "prometheus"

    result = run_manage(
        "collectstatic",
        "--noinput",
        "--dry-run",
        "-v0",
        env={**PRODUCTION, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )

    assert result.returncode == 0, result.stderr
    assert directory.is_dir()


@pytest.mark.django_db
def test_job_queue_depth_oldest_age_and_dead_jobs_are_read_at_scrape_time(api_client, clock):
    import datetime as dt

    from django_q.models import Failure, OrmQ
    from django_q.tasks import async_task

    empty = scrape(api_client)
    async_task("events.tasks.event_sweep")
    clock.advance(seconds=90)
    async_task("events.tasks.event_sweep")
    # One handed to a worker that is still on it: not waiting.
    OrmQ.objects.create(key="lithtrix", payload="x", lock=clock.now + dt.timedelta(seconds=60))
    Failure.objects.create(
        id="f" * 32,
        name="x",
        func="events.tasks.event_dispatch",
        started=clock.now,
        stopped=clock.now,
        success=False,
    )

    text = scrape(api_client)

    assert "lithtrix_jobs_queued 0.0" in empty
    assert "lithtrix_jobs_oldest_queued_age_seconds 0.0" in empty
    assert sample(text, "lithtrix_jobs_queued") == 2
    assert sample(text, "lithtrix_jobs_oldest_queued_age_seconds") == 90
    assert sample(text, "lithtrix_jobs_dead") == 1
