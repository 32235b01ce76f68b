"""The set-up commands: the webhook endpoint for a deployment, localstripe's rows, make run."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from django.core.management import CommandError, call_command
from djstripe import models as djstripe_models

from billing.payments.dev import devstripe
from billing.tests.conftest import TEST_SECRET_KEY, recorded


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_webhook_endpoint_for_a_dashboard_endpoint_records_its_secret(local_stripe):
    out = run(
        "billing_webhook_endpoint",
        "--base-url",
        "https://api.example.com/",
        "--secret",
        "whsec_fromTheDashboard0123456789",
        "--id",
        "we_1Dashboard",
    )

    endpoint = djstripe_models.WebhookEndpoint.objects.get(id="we_1Dashboard")
    assert endpoint.secret == "whsec_fromTheDashboard0123456789"
    assert endpoint.url == "https://api.example.com/v1/billing/webhook"
    assert "URL: https://api.example.com/v1/billing/webhook" in out
    assert f"https://api.example.com/stripe/webhook/{endpoint.djstripe_uuid}" in out


def test_webhook_endpoint_is_created_on_stripe_with_its_signing_secret(recorded_stripe):
    recorded_stripe.routes[("POST", "/v1/webhook_endpoints")] = lambda params: (
        200,
        {
            **recorded("webhook_endpoint"),
            "metadata": {"djstripe_uuid": params["metadata[djstripe_uuid]"][0]},
        },
    )

    out = run("billing_webhook_endpoint", "--base-url", "https://api.example.com")

    _, _, params = recorded_stripe.calls[-1]
    assert params["url"] == ["https://api.example.com/v1/billing/webhook"]
    assert params["enabled_events[0]"] == ["customer.subscription.deleted"]
    endpoint = djstripe_models.WebhookEndpoint.objects.get(id="we_1RLtxEndpoint0001")
    assert endpoint.secret == "whsec_recordedEndpointSecret0123456789"
    assert str(endpoint.djstripe_uuid) == params["metadata[djstripe_uuid]"][0]
    assert "URL: https://api.example.com/v1/billing/webhook" in out


def test_webhook_endpoint_refuses_a_base_url_without_scheme(local_stripe):
    with pytest.raises(CommandError):
        run("billing_webhook_endpoint", "--base-url", "api.example.com", "--secret", "whsec_x")


def test_localstripe_setup_creates_djstripe_rows_and_the_local_webhook(local_stripe):
    djstripe_models.APIKey.objects.all().delete()

    out = run(
        "billing_localstripe_setup", "--webhook-url", "http://127.0.0.1:8000/v1/billing/webhook"
    )

    key = djstripe_models.APIKey.objects.get(secret=TEST_SECRET_KEY)
    assert key.djstripe_owner_account_id == "acct_localstripe"
    endpoint = djstripe_models.WebhookEndpoint.objects.get(id="we_localstripe")
    assert endpoint.secret.startswith("whsec_")
    assert "http://127.0.0.1:8000/v1/billing/webhook" in out


def test_localstripe_setup_refuses_a_live_key(local_stripe, settings):
    settings.STRIPE_SECRET_KEY = "sk_live_" + "a" * 24

    with pytest.raises(CommandError):
        run("billing_localstripe_setup")


def test_make_run_with_stripe_keys_starts_nothing_local(monkeypatch, capfd):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_" + "a" * 24)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)

    def refuse():
        raise AssertionError("localstripe must not start with real keys")

    monkeypatch.setattr(devstripe, "start_subprocess", refuse)

    code = devstripe.main(
        [sys.executable, "-c", "import os; print(os.environ.get('STRIPE_API_BASE', 'stripe'))"]
    )

    assert code == 0
    assert capfd.readouterr().out.strip() == "stripe"


def test_localstripe_of_the_suite_listens_on_loopback_only(localstripe_url):
    assert localstripe_url.startswith("http://127.0.0.1:")


def test_localstripe_setup_logs_the_pro_plan_not_yet_made_at_info(local_stripe, caplog):
    caplog.set_level(logging.INFO, logger="billing.stripe")

    run("billing_localstripe_setup", "--pro-plan", "price_lithtrix_pro_monthly")

    lines = [record for record in caplog.records if record.name == "billing.stripe"]
    assert [r.getMessage() for r in lines if r.levelno >= logging.WARNING] == []
    assert any(
        r.levelno == logging.INFO and r.getMessage() == "stripe plan.retrieve: not found (yet)"
        for r in lines
    )
