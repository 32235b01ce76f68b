import pytest
from django.utils import timezone

from accounts.models import Agent
from keys.models import ApiKey
from keys.selectors import active_api_key_with_agent


def model_state(instance):
    return {k: v for k, v in vars(instance).items() if not k.startswith("_")}


@pytest.mark.django_db
def test_lookup_returns_the_same_key_and_agent_as_the_orm(registered, django_assert_num_queries):
    Agent.objects.filter(pk=registered.agent.pk).update(
        calls_total=7, last_call_at=timezone.now(), stripe_customer_id="cus_1"
    )

    with django_assert_num_queries(1):
        found = active_api_key_with_agent(key=registered.api_key)
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

    assert active_api_key_with_agent(key=registered.api_key) is None
    assert (
        active_api_key_with_agent(
            key=other.api_key[:-1] + ("x" if other.api_key[-1] != "x" else "y")
        )
        is None
    )
    found = active_api_key_with_agent(key=other.api_key)
    assert found is not None and found.agent == other.agent
