"""GET /v1/billing and GET /v1/usage, and what stays reachable over the cap."""

from __future__ import annotations

import datetime

import pytest

from accounts.models import Agent
from accounts.services import agent_set_tier
from billing.metering import selectors
from billing.models import DailyUsage
from billing.tests.helpers import assert_envelope, rate_headers, set_calls_total


@pytest.mark.django_db
def test_billing_for_a_new_free_agent(api_client, registered):
    response = api_client.get("/v1/billing", **registered.auth)
    assert response.status_code == 200
    assert response.json() == {
        "tier": "free",
        "calls_total": 0,
        "call_limit": 300,
        "over_limit": False,
        "stripe_customer_id": None,
        "cancel_at": None,
    }
    assert rate_headers(response)[:2] == (60, 59)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("calls", "over_limit"), [(299, False), (300, True)], ids=["below", "at-cap"]
)
def test_billing_over_limit_at_the_cap(api_client, registered, calls, over_limit):
    set_calls_total(registered.agent, calls)
    body = api_client.get("/v1/billing", **registered.auth).json()
    assert (body["calls_total"], body["over_limit"]) == (calls, over_limit)


@pytest.mark.django_db
def test_billing_for_pro_has_no_limit_and_shows_the_customer(api_client, registered):
    set_calls_total(registered.agent, 1234)
    agent_set_tier(agent=registered.agent, tier="pro")
    Agent.objects.filter(pk=registered.agent.pk).update(stripe_customer_id="cus_Test123")

    response = api_client.get("/v1/billing", **registered.auth)

    assert response.json() == {
        "tier": "pro",
        "calls_total": 1234,
        "call_limit": None,
        "over_limit": False,
        "stripe_customer_id": "cus_Test123",
        "cancel_at": None,
    }


@pytest.mark.django_db
def test_call_limit_comes_from_settings(api_client, registered, settings):
    settings.LITHTRIX_FREE_CALL_LIMIT = 5
    set_calls_total(registered.agent, 5)
    body = api_client.get("/v1/billing", **registered.auth).json()
    assert (body["call_limit"], body["over_limit"]) == (5, True)
    usage = api_client.get("/v1/usage", **registered.auth).json()
    assert usage["calls_remaining"] == 0
    assert api_client.get("/v1/authorize", **registered.auth).status_code == 402


@pytest.mark.django_db
def test_usage_for_a_new_agent_is_seven_zero_days_ending_today(api_client, registered):
    response = api_client.get("/v1/usage", **registered.auth)

    assert response.status_code == 200
    body = response.json()
    today = datetime.datetime.now(datetime.UTC).date()
    assert body == {
        "calls_total": 0,
        "calls_this_month": 0,
        "calls_remaining": 300,
        "daily_breakdown": [
            {"date": (today - datetime.timedelta(days=n)).isoformat(), "calls": 0}
            for n in range(6, -1, -1)
        ],
    }
    assert rate_headers(response)[:2] == (60, 59)


@pytest.mark.django_db
def test_usage_counts_metered_calls_on_todays_utc_row(api_client, registered):
    for _ in range(3):
        assert api_client.post("/v1/authorize", **registered.auth).status_code == 200

    body = api_client.get("/v1/usage", **registered.auth).json()

    assert (body["calls_total"], body["calls_this_month"], body["calls_remaining"]) == (3, 3, 297)
    assert body["daily_breakdown"][-1] == {
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "calls": 3,
    }
    assert [day["calls"] for day in body["daily_breakdown"][:-1]] == [0] * 6


@pytest.mark.django_db
def test_usage_month_and_week_are_utc_calendar_windows(api_client, registered, monkeypatch):
    # Today is 3 March 2026 (UTC): the week reaches back into February, the month does not.
    now = datetime.datetime(2026, 3, 3, 23, 30, tzinfo=datetime.UTC)
    monkeypatch.setattr(selectors.timezone, "now", lambda: now)
    agent = registered.agent
    for day, calls in [
        ("2026-01-31", 100),  # another month, outside the week
        ("2026-02-24", 50),  # eight days back: outside the week
        ("2026-02-25", 7),  # first day of the week
        ("2026-02-28", 3),
        ("2026-03-01", 2),
        ("2026-03-03", 4),
        ("2026-03-04", 9),  # tomorrow (clock skew): in neither
    ]:
        DailyUsage.objects.create(agent=agent, date=datetime.date.fromisoformat(day), calls=calls)
    set_calls_total(agent, 175)

    body = api_client.get("/v1/usage", **registered.auth).json()

    assert body == {
        "calls_total": 175,
        "calls_this_month": 6,
        "calls_remaining": 125,
        "daily_breakdown": [
            {"date": "2026-02-25", "calls": 7},
            {"date": "2026-02-26", "calls": 0},
            {"date": "2026-02-27", "calls": 0},
            {"date": "2026-02-28", "calls": 3},
            {"date": "2026-03-01", "calls": 2},
            {"date": "2026-03-02", "calls": 0},
            {"date": "2026-03-03", "calls": 4},
        ],
    }


@pytest.mark.django_db
def test_usage_for_pro_has_no_remaining(api_client, registered):
    agent_set_tier(agent=registered.agent, tier="pro")
    body = api_client.get("/v1/usage", **registered.auth).json()
    assert body["calls_remaining"] is None


@pytest.mark.django_db
def test_usage_over_the_cap_has_none_remaining(api_client, registered):
    set_calls_total(registered.agent, 300)
    assert api_client.get("/v1/usage", **registered.auth).json()["calls_remaining"] == 0


@pytest.mark.django_db
def test_usage_belongs_to_the_agent_and_survives_key_rotation(api_client, make_agent):
    mine, theirs = make_agent(), make_agent()
    for _ in range(3):
        assert api_client.get("/v1/authorize", **mine.auth).status_code == 200
    assert api_client.get("/v1/authorize", **theirs.auth).status_code == 200

    rotated = api_client.post("/v1/keys/rotate", **mine.auth)
    assert rotated.status_code == 200
    new_auth = {"HTTP_AUTHORIZATION": f"Bearer {rotated.json()['api_key']}"}
    assert_envelope(api_client.get("/v1/usage", **mine.auth), 401, "INVALID_API_KEY")
    for _ in range(2):
        assert api_client.get("/v1/authorize", **new_auth).status_code == 200

    body = api_client.get("/v1/usage", **new_auth).json()
    assert (body["calls_total"], body["calls_this_month"]) == (5, 5)
    assert body["daily_breakdown"][-1]["calls"] == 5
    billing = api_client.get("/v1/billing", **new_auth).json()
    assert billing["calls_total"] == 5
    theirs_body = api_client.get("/v1/usage", **theirs.auth).json()
    assert (theirs_body["calls_total"], theirs_body["daily_breakdown"][-1]["calls"]) == (1, 1)


@pytest.mark.django_db
def test_billing_and_usage_need_a_key(api_client):
    for path in ("/v1/billing", "/v1/usage"):
        assert_envelope(api_client.get(path), 401, "INVALID_API_KEY")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/billing", "/v1/usage"])
def test_billing_and_usage_are_read_only(api_client, registered, path):
    assert_envelope(
        api_client.post(path, {}, format="json", **registered.auth), 405, "METHOD_NOT_ALLOWED"
    )


# --- over the cap, account, billing and key endpoints stay reachable ------------------


@pytest.mark.django_db
def test_over_limit_agent_still_reaches_account_billing_and_keys(api_client, registered):
    set_calls_total(registered.agent, 300)
    assert api_client.get("/v1/authorize", **registered.auth).status_code == 402

    me = api_client.get("/v1/me", **registered.auth)
    billing = api_client.get("/v1/billing", **registered.auth)
    usage = api_client.get("/v1/usage", **registered.auth)
    rotated = api_client.post("/v1/keys/rotate", **registered.auth)

    assert me.status_code == 200 and me.json()["tier"] == "free"
    assert billing.status_code == 200 and billing.json()["over_limit"] is True
    assert usage.status_code == 200 and usage.json()["calls_remaining"] == 0
    assert rotated.status_code == 200 and rotated.json()["api_key"].startswith("ltx_")
    for response in (me, billing, usage, rotated):
        assert rate_headers(response)[0] == 60
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 300


@pytest.mark.django_db
def test_over_limit_agent_still_reaches_billing_setup(api_client, registered):
    set_calls_total(registered.agent, 300)

    # No payment method: refused by validation, not by the cap.
    response = api_client.post("/v1/billing/setup", {}, format="json", **registered.auth)

    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert rate_headers(response)[0] == 60
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 300
