"""meter_call: the one atomic statement that counts a metered call against the cap."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Agent
from accounts.services import agent_set_tier
from billing.metering.services import meter_call
from billing.models import DailyUsage
from billing.tests.helpers import set_calls_total


@pytest.mark.django_db
def test_allowed_call_counts_once_and_records_the_utc_day(registered):
    before = timezone.now()

    result = meter_call(agent_id=registered.agent.pk)

    assert result.allowed is True
    assert result.calls_total == 1
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.calls_total == 1
    assert agent.last_call_at is not None and agent.last_call_at >= before
    usage = DailyUsage.objects.get(agent=agent)
    assert (usage.date, usage.calls) == (timezone.now().date(), 1)


@pytest.mark.django_db
def test_calls_on_one_day_share_one_daily_row(registered):
    for expected in (1, 2, 3):
        assert meter_call(agent_id=registered.agent.pk).calls_total == expected
    assert list(DailyUsage.objects.values_list("calls", flat=True)) == [3]


@pytest.mark.django_db
def test_free_agent_gets_exactly_the_call_limit(registered, settings):
    settings.LITHTRIX_FREE_CALL_LIMIT = 3

    results = [meter_call(agent_id=registered.agent.pk).allowed for _ in range(5)]

    assert results == [True, True, True, False, False]
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 3
    assert DailyUsage.objects.get(agent=registered.agent).calls == 3


@pytest.mark.django_db
def test_refused_call_changes_no_counter_and_is_counted_as_refused(registered):
    set_calls_total(registered.agent, 300)

    results = [meter_call(agent_id=registered.agent.pk) for _ in range(2)]

    assert [(r.allowed, r.calls_total) for r in results] == [(False, None)] * 2
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert (agent.calls_total, agent.last_call_at) == (300, None)
    usage = DailyUsage.objects.get(agent=agent)
    assert (usage.date, usage.calls, usage.refused) == (timezone.now().date(), 0, 2)


@pytest.mark.django_db
def test_refusal_of_an_unknown_agent_writes_nothing(db):
    result = meter_call(agent_id=uuid.uuid4())

    assert (result.allowed, result.calls_total) == (False, None)
    assert not DailyUsage.objects.exists()


@pytest.mark.django_db
def test_pro_agent_is_counted_without_a_cap(registered):
    set_calls_total(registered.agent, 300)
    agent_set_tier(agent=registered.agent, tier="pro")

    result = meter_call(agent_id=registered.agent.pk)

    assert (result.allowed, result.calls_total) == (True, 301)
    assert DailyUsage.objects.get(agent=registered.agent).calls == 1


@pytest.mark.django_db
def test_metering_one_agent_leaves_others_alone(make_agent):
    first, second = make_agent(), make_agent()
    meter_call(agent_id=first.agent.pk)
    assert Agent.objects.get(pk=second.agent.pk).calls_total == 0
    assert not DailyUsage.objects.filter(agent=second.agent).exists()


def _meter_concurrently(agent_id, calls: int) -> list[bool]:
    """``calls`` threads, each on its own database connection, meter at the same moment."""
    barrier = threading.Barrier(calls)

    def one_call(_: int) -> bool:
        try:
            barrier.wait(timeout=30)
            return meter_call(agent_id=agent_id).allowed
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one_call, range(calls)))


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_at_the_cap_stop_exactly_at_the_limit(registered):
    set_calls_total(registered.agent, 290)

    results = _meter_concurrently(registered.agent.pk, 64)

    assert results.count(True) == 10
    assert results.count(False) == 54
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 300
    usage = DailyUsage.objects.get(agent=registered.agent)
    assert (usage.calls, usage.refused) == (10, 54)


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_pro_calls_are_all_counted(registered):
    agent_set_tier(agent=registered.agent, tier="pro")
    set_calls_total(registered.agent, 299)

    results = _meter_concurrently(registered.agent.pk, 64)

    assert results.count(True) == 64
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 363
    assert DailyUsage.objects.get(agent=registered.agent).calls == 64
