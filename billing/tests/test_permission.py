"""billing.metering.permissions.Metered on views of this project."""

from __future__ import annotations

import pytest

from accounts.models import Agent
from billing.models import DailyUsage
from billing.tests.helpers import assert_envelope, rate_headers, set_calls_total

pytestmark = [pytest.mark.django_db, pytest.mark.urls("billing.tests.urls")]

METERED = "/v1/test/metered"


def calls_total(agent: Agent) -> int:
    return Agent.objects.get(pk=agent.pk).calls_total


def test_every_method_of_a_metered_view_is_metered(api_client, registered):
    assert api_client.get(METERED, **registered.auth).status_code == 200
    assert api_client.post(METERED, {}, format="json", **registered.auth).status_code == 200
    assert calls_total(registered.agent) == 2


def test_metered_view_counts_each_call(api_client, registered):
    for expected in (1, 2):
        response = api_client.get(METERED, **registered.auth)
        assert response.status_code == 200
        assert response.json() == {"agent_id": str(registered.agent.pk)}
        assert rate_headers(response)[:2] == (60, 60 - expected)
        assert calls_total(registered.agent) == expected
    assert DailyUsage.objects.get(agent=registered.agent).calls == 2


def test_metered_view_over_the_cap_is_402_and_not_counted(api_client, registered):
    set_calls_total(registered.agent, 300)

    response = api_client.get(METERED, **registered.auth)

    body = assert_envelope(response, 402, "OVER_LIMIT")
    assert body["upgrade_url"] == "/v1/billing/setup"
    assert set(body) == {"status", "error_code", "message", "upgrade_url"}
    assert rate_headers(response)[:2] == (60, 59)
    assert calls_total(registered.agent) == 300


def test_rate_limited_call_is_refused_before_it_is_metered(api_client, registered, ratelimit_clock):
    # DRF checks permissions before throttles: the permission must decide the rate
    # limit itself, and the throttle must not count the request a second time.
    statuses = [api_client.get(METERED, **registered.auth).status_code for _ in range(61)]

    assert statuses == [200] * 60 + [429]
    assert calls_total(registered.agent) == 60
    assert DailyUsage.objects.get(agent=registered.agent).calls == 60


def test_metered_view_without_a_key_is_401(api_client, registered):
    response = api_client.get(METERED)
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert calls_total(registered.agent) == 0


def test_wrong_method_is_405_and_not_metered(api_client, registered):
    response = api_client.put(METERED, {}, format="json", **registered.auth)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert calls_total(registered.agent) == 0


def test_options_is_rate_limited_but_not_metered(api_client, registered):
    # The view has a POST action: DRF's metadata checks permissions as if POSTed.
    response = api_client.options(METERED, **registered.auth)
    assert response.status_code == 200
    assert "POST" in response["Allow"]
    assert rate_headers(response)[:2] == (60, 59)
    assert calls_total(registered.agent) == 0


def test_a_metered_200_says_how_many_calls_remain_for_free_only(api_client, registered):
    from accounts.services import agent_set_tier

    free = api_client.get(METERED, **registered.auth)
    assert free.status_code == 200 and free["X-Calls-Remaining"] == "299"
    agent_set_tier(agent=registered.agent, tier="pro")
    pro = api_client.get(METERED, **registered.auth)
    assert pro.status_code == 200 and "X-Calls-Remaining" not in pro
