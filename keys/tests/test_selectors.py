from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Agent
from keys.models import ApiKey
from keys.selectors import working_api_key_with_agent, working_key_sql, working_keys_condition


def model_state(instance):
    return {k: v for k, v in vars(instance).items() if not k.startswith("_")}


@pytest.mark.django_db
def test_lookup_returns_the_same_key_and_agent_as_the_orm(registered, django_assert_num_queries):
    Agent.objects.filter(pk=registered.agent.pk).update(
        calls_total=7, last_call_at=timezone.now(), stripe_customer_id="cus_1"
    )

    with django_assert_num_queries(1):
        found = working_api_key_with_agent(key=registered.api_key)
        assert found is not None
        agent = found.agent  # already loaded: no second query

    expected = ApiKey.objects.select_related("agent").get(agent=registered.agent)
    assert model_state(found) == model_state(expected)
    assert model_state(agent) == model_state(expected.agent)
    assert found._state.adding is False and agent._state.adding is False
    assert agent.calls_total == 7


@pytest.mark.django_db
def test_lookup_refuses_revoked_and_unknown_keys(registered, make_agent):
    other = make_agent()
    ApiKey.objects.filter(agent=registered.agent).update(revoked_at=timezone.now())

    assert working_api_key_with_agent(key=registered.api_key) is None
    assert (
        working_api_key_with_agent(
            key=other.api_key[:-1] + ("x" if other.api_key[-1] != "x" else "y")
        )
        is None
    )
    found = working_api_key_with_agent(key=other.api_key)
    assert found is not None and found.agent == other.agent


@pytest.mark.django_db
def test_the_sql_and_orm_forms_of_a_working_key_agree(make_agent):
    # The hot statements need the condition as SQL (prepared, keys.selectors.
    # working_key_sql); querysets need it as a Q (working_keys_condition). Every
    # key state, through both: the same keys.
    now = timezone.now()
    agents = {name: make_agent() for name in ("plain", "revoked", "expired", "overlap", "deleted")}
    keys = {name: ApiKey.objects.get(agent=made.agent) for name, made in agents.items()}
    ApiKey.objects.filter(pk=keys["revoked"].pk).update(revoked_at=now)
    ApiKey.objects.filter(pk=keys["expired"].pk).update(expires_at=now - timedelta(seconds=1))
    ApiKey.objects.filter(pk=keys["overlap"].pk).update(expires_at=now + timedelta(hours=1))
    Agent.objects.filter(pk=agents["deleted"].agent.pk).update(deleted_at=now)

    by_orm = set(
        ApiKey.objects.filter(working_keys_condition(now), agent__deleted_at__isnull=True)
        .filter(pk__in=[key.pk for key in keys.values()])
        .values_list("pk", flat=True)
    )
    by_sql = set()
    sql = (
        f"SELECT k.id FROM {ApiKey._meta.db_table} k JOIN {Agent._meta.db_table} a "  # noqa: S608
        f"ON a.id = k.agent_id WHERE {working_key_sql('k', 'a')}"
    )
    with connection.cursor() as cursor:
        for key in keys.values():
            cursor.execute(sql, {"hashed_key": key.hashed_key, "now": now})
            by_sql |= {row[0] for row in cursor.fetchall()}

    assert by_orm == by_sql == {keys["plain"].pk, keys["overlap"].pk}
