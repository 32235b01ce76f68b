"""/v1/authorize with a key hint: one statement per call, and never a decision of its own.

A successful call leaves a hint (key hash -> agent, tier) in the process; the next
call skips the key lookup and its metering statement re-checks the key. Every
refusal, and any change since the hint (revocation, rotation, cap, tier, rate
limit), is decided by the full lookup, exactly as without a hint.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Agent
from accounts.services import agent_delete, agent_set_tier
from billing.metering.services import meter_call
from billing.models import DailyUsage
from billing.tests.helpers import assert_envelope, rate_headers, set_calls_total
from keys import hints
from keys.crypto import hash_key
from keys.models import ApiKey
from keys.services import api_key_revoke, api_key_rotate

pytestmark = pytest.mark.requires_postgres

AUTHORIZE = "/v1/authorize"


def calls_total(agent: Agent) -> int:
    return Agent.objects.get(pk=agent.pk).calls_total


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"].split()[0]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))  # the test's transaction
    ]


@pytest.fixture
def hinted(api_client, registered):
    """An agent whose key has made one successful call in this process."""
    assert api_client.get(AUTHORIZE, **registered.auth).status_code == 200
    assert hints.get(hash_key(registered.api_key)) == hints.KeyHint(
        agent_id=registered.agent.pk, tier="free"
    )
    return registered


@pytest.mark.django_db
def test_a_hinted_call_is_one_statement_and_counted(api_client, hinted):
    with CaptureQueriesContext(connection) as captured:
        response = api_client.get(AUTHORIZE, **hinted.auth)

    assert response.status_code == 200
    assert statements(captured) == ["WITH"]  # no key lookup: the UPDATE checks the key
    assert response["X-Agent-Id"] == str(hinted.agent.pk)
    assert response["X-Agent-Tier"] == "free"
    assert response.json() == {"agent_id": str(hinted.agent.pk), "tier": "free"}
    assert rate_headers(response)[:2] == (60, 58)
    assert calls_total(hinted.agent) == 2
    assert DailyUsage.objects.get(agent=hinted.agent).calls == 2


@pytest.mark.django_db
def test_a_revoked_key_is_refused_at_once_despite_its_hint(api_client, hinted):
    api_key_revoke(api_key=hinted.agent.api_keys.get())

    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == "Bearer"
    assert "X-Agent-Id" not in response
    assert calls_total(hinted.agent) == 1
    assert DailyUsage.objects.get(agent=hinted.agent).calls == 1
    assert hints.get(hash_key(hinted.api_key)) is None


@pytest.mark.django_db
def test_a_rotated_key_is_refused_and_its_successor_works(api_client, hinted):
    new_key = api_key_rotate(api_key=hinted.agent.api_keys.get()).api_key

    assert_envelope(api_client.get(AUTHORIZE, **hinted.auth), 401, "INVALID_API_KEY")
    response = api_client.get(AUTHORIZE, HTTP_AUTHORIZATION=f"Bearer {new_key}")
    assert response.status_code == 200
    assert response["X-Agent-Id"] == str(hinted.agent.pk)
    assert calls_total(hinted.agent) == 2


@pytest.mark.django_db
def test_the_cap_holds_for_a_hinted_key(api_client, hinted):
    set_calls_total(hinted.agent, 300)

    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert_envelope(response, 402, "OVER_LIMIT")
    assert response.json()["upgrade_url"] == "/v1/billing/setup"
    assert calls_total(hinted.agent) == 300
    usage = DailyUsage.objects.get(agent=hinted.agent)
    assert (usage.calls, usage.refused) == (1, 1)  # the refusal counted once, not per path
    # A refused agent keeps no hint: its calls take the full path until one passes.
    assert hints.get(hash_key(hinted.api_key)) is None


@pytest.mark.django_db
def test_an_upgrade_after_the_hint_counts_under_the_new_tier(api_client, hinted):
    agent_set_tier(agent=hinted.agent, tier="pro")

    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert response.status_code == 200
    assert response["X-Agent-Tier"] == "pro"
    assert rate_headers(response)[:2] == (600, 599)  # Pro's limit, not Free's
    assert calls_total(hinted.agent) == 2
    hint = hints.get(hash_key(hinted.api_key))
    assert hint is not None and hint.tier == "pro"


@pytest.mark.django_db
def test_a_downgrade_after_the_hint_counts_under_the_new_tier(api_client, registered):
    agent_set_tier(agent=registered.agent, tier="pro")
    assert api_client.get(AUTHORIZE, **registered.auth).status_code == 200
    agent_set_tier(agent=registered.agent, tier="free")
    set_calls_total(registered.agent, 300)

    response = api_client.get(AUTHORIZE, **registered.auth)

    assert_envelope(response, 402, "OVER_LIMIT")
    assert rate_headers(response)[:2] == (60, 59)  # counted under Free's limit
    assert calls_total(registered.agent) == 300


@pytest.mark.django_db
def test_an_agent_rate_limited_on_free_that_upgrades_is_served(api_client, hinted):
    for _ in range(59):
        assert api_client.get("/v1/me", **hinted.auth).status_code == 200
    assert_envelope(api_client.get(AUTHORIZE, **hinted.auth), 429, "RATE_LIMIT_EXCEEDED")
    # The 429 was decided by the full lookup; one more successful call re-creates
    # a hint only after the upgrade.
    agent_set_tier(agent=hinted.agent, tier="pro")
    hints.remember(hash_key(hinted.api_key), Agent(id=hinted.agent.pk, tier="free"))

    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert response.status_code == 200
    assert rate_headers(response)[:2] == (600, 599)
    assert calls_total(hinted.agent) == 2


@pytest.mark.django_db
def test_a_revoked_key_of_a_rate_limited_agent_gets_401_not_429(api_client, hinted):
    for _ in range(59):
        assert api_client.get("/v1/me", **hinted.auth).status_code == 200
    api_key_revoke(api_key=hinted.agent.api_keys.get())

    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert calls_total(hinted.agent) == 1


@pytest.mark.django_db
def test_hints_can_be_turned_off(api_client, registered, settings):
    settings.LITHTRIX_KEY_HINTS = 0
    for expected in (1, 2):
        with CaptureQueriesContext(connection) as captured:
            assert api_client.get(AUTHORIZE, **registered.auth).status_code == 200
        assert statements(captured) == ["SELECT", "WITH"]
        assert calls_total(registered.agent) == expected
    assert hints.get(hash_key(registered.api_key)) is None


@pytest.mark.django_db
def test_the_hints_are_bounded(api_client, make_agent, settings):
    settings.LITHTRIX_KEY_HINTS = 2
    agents = [make_agent() for _ in range(3)]
    for agent in agents:
        assert api_client.get(AUTHORIZE, **agent.auth).status_code == 200
    assert [hints.get(hash_key(a.api_key)) is not None for a in agents] == [False, True, True]


@pytest.mark.django_db
def test_the_metering_statements_are_prepared_unless_pgbouncer_pools(api_client, hinted):
    assert api_client.get(AUTHORIZE, **hinted.auth).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0].split()[0] for row in cursor.fetchall()]
    if django_settings.DATABASE_POOLING == "pgbouncer":
        # Transaction pooling: no statement may outlive its transaction.
        assert connection.connection.prepare_threshold is None
        assert prepared == []
    else:
        # The key lookup, the metering statement and the one that re-checks the key.
        assert sorted(prepared) == ["SELECT", "WITH", "WITH"]


@pytest.mark.django_db(transaction=True)
def test_metering_without_waiting_for_the_wal_flush_is_still_exact(registered, settings):
    settings.LITHTRIX_METER_SYNCHRONOUS_COMMIT = "off"
    set_calls_total(registered.agent, 298)

    results = [meter_call(agent_id=registered.agent.pk).allowed for _ in range(3)]

    assert results == [True, True, False]
    assert calls_total(registered.agent) == 300
    assert DailyUsage.objects.get(agent=registered.agent).calls == 2
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")  # SET LOCAL: only those transactions
        assert cursor.fetchone() == ("on",)
        cursor.execute("SELECT now() = statement_timestamp()")  # no transaction left open
        assert cursor.fetchone() == (True,)


# --- Any other key-authenticated endpoint: the full lookup decides, a hint changes nothing ---


@pytest.mark.django_db
def test_a_hinted_key_is_rate_limited_once_per_request(api_client, hinted):
    for remaining in (58, 57):
        with CaptureQueriesContext(connection) as captured:
            response = api_client.get("/v1/me", **hinted.auth)
        assert response.status_code == 200
        assert response.json()["agent_id"] == str(hinted.agent.pk)
        assert rate_headers(response)[:2] == (60, remaining)
        assert statements(captured) == ["SELECT"]


@pytest.mark.django_db
def test_a_revoked_hinted_key_gets_401_on_any_endpoint(api_client, hinted):
    api_key_revoke(api_key=hinted.agent.api_keys.get())

    response = api_client.get("/v1/me", **hinted.auth)

    assert_envelope(response, 401, "INVALID_API_KEY")
    # Counted early for the hinted agent, but a refusal carries no agent's limit.
    assert "RateLimit-Limit" not in response
    assert hints.get(hash_key(hinted.api_key)) is None


@pytest.mark.django_db
def test_an_expired_overlap_hinted_key_gets_401_on_any_endpoint(api_client, hinted):
    api_key_rotate(api_key=hinted.agent.api_keys.get(), overlap_seconds=3600)
    assert api_client.get("/v1/me", **hinted.auth).status_code == 200
    ApiKey.objects.filter(hashed_key=hash_key(hinted.api_key)).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    assert_envelope(api_client.get("/v1/me", **hinted.auth), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_a_tier_change_after_the_hint_is_rate_limited_under_the_new_tier(api_client, hinted):
    agent_set_tier(agent=hinted.agent, tier="pro")

    response = api_client.get("/v1/me", **hinted.auth)

    assert response.status_code == 200
    assert response.json()["tier"] == "pro"
    assert rate_headers(response)[:2] == (600, 599)
    hint = hints.get(hash_key(hinted.api_key))
    assert hint is not None and hint.tier == "pro"


@pytest.mark.django_db
def test_a_hinted_key_over_its_rate_gets_429_and_a_revoked_one_401(api_client, hinted):
    for _ in range(59):
        assert api_client.get("/v1/me", **hinted.auth).status_code == 200
    response = api_client.get("/v1/me", **hinted.auth)
    assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert int(response["Retry-After"]) >= 1

    api_key_revoke(api_key=hinted.agent.api_keys.get())
    assert_envelope(api_client.get("/v1/me", **hinted.auth), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_a_hinted_free_call_says_how_many_calls_remain(api_client, hinted):
    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert response.status_code == 200
    assert response["X-Calls-Remaining"] == "298"  # 300 - 2


@pytest.mark.django_db
def test_an_overlap_key_works_until_its_expiry_then_is_refused_despite_its_hint(api_client, hinted):
    rotation = api_key_rotate(api_key=hinted.agent.api_keys.get(), overlap_seconds=3600)
    assert api_client.get(AUTHORIZE, **hinted.auth).status_code == 200  # still in its overlap
    assert hints.get(hash_key(hinted.api_key)) is not None
    ApiKey.objects.filter(hashed_key=hash_key(hinted.api_key)).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    with CaptureQueriesContext(connection) as captured:
        response = api_client.get(AUTHORIZE, **hinted.auth)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert statements(captured)[0] == "WITH"  # the hinted statement refused it first
    assert calls_total(hinted.agent) == 2
    assert hints.get(hash_key(hinted.api_key)) is None
    new = api_client.get(AUTHORIZE, HTTP_AUTHORIZATION=f"Bearer {rotation.api_key}")
    assert new.status_code == 200
    assert calls_total(hinted.agent) == 3


@pytest.mark.django_db
def test_a_deleted_agents_key_is_refused_at_once_despite_its_hint(api_client, hinted):
    agent_delete(agent=hinted.agent)

    response = api_client.get(AUTHORIZE, **hinted.auth)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert hints.get(hash_key(hinted.api_key)) is None


@pytest.mark.django_db
def test_the_hinted_statement_refuses_an_expired_key_or_a_deleted_agent(hinted):
    key = ApiKey.objects.get(hashed_key=hash_key(hinted.api_key))

    def meter() -> bool:
        return meter_call(agent_id=hinted.agent.pk, hashed_key=key.hashed_key, tier="free").allowed

    assert meter()
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert not meter()
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + dt.timedelta(hours=1))
    assert meter()
    Agent.objects.filter(pk=hinted.agent.pk).update(deleted_at=timezone.now())
    assert not meter()
    assert calls_total(hinted.agent) == 3
    # Hinted misses count no refusal: the full path that follows decides and counts.
    assert DailyUsage.objects.get(agent=hinted.agent).refused == 0
