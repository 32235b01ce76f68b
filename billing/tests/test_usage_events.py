"""usage.near_limit and usage.limit_reached: recorded by the metering statement itself."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from accounts.models import Agent
from billing.metering.services import meter_call, near_limit_mark
from events.models import Event
from keys.crypto import hash_key
from testing.factories import set_calls_total
from testing.jobs import queued_dispatches


def usage_events() -> list[tuple[str, dict]]:
    return [(e.type, e.data) for e in Event.objects.order_by("created_at")]


@pytest.mark.parametrize(("limit", "mark"), [(300, 240), (10, 8), (4, 3), (2, 1), (1, 0)], ids=str)
def test_near_limit_mark_is_80_percent_below_the_cap(limit, mark):
    assert near_limit_mark(limit) == mark


@pytest.mark.django_db
def test_the_call_reaching_80_percent_records_near_limit_once(registered):
    set_calls_total(registered.agent, 238)

    results = [meter_call(agent_id=registered.agent.pk) for _ in range(3)]

    assert [r.calls_total for r in results] == [239, 240, 241]
    assert [r.event_id is not None for r in results] == [False, True, False]
    [event] = Event.objects.all()
    assert event.id == results[1].event_id and event.id.startswith("evt_")
    assert (event.agent_id, event.type, event.data) == (
        registered.agent.pk,
        "usage.near_limit",
        {"calls_total": 240, "call_limit": 300},
    )
    assert queued_dispatches() == [event.id]


@pytest.mark.django_db
def test_the_call_reaching_the_cap_records_limit_reached_once(registered):
    set_calls_total(registered.agent, 298)

    results = [meter_call(agent_id=registered.agent.pk) for _ in range(4)]

    assert [r.allowed for r in results] == [True, True, False, False]
    assert usage_events() == [("usage.limit_reached", {"calls_total": 300, "call_limit": 300})]
    assert queued_dispatches() == [results[1].event_id]


@pytest.mark.django_db
def test_pro_agents_record_no_usage_event(registered):
    Agent.objects.filter(pk=registered.agent.pk).update(tier="pro", calls_total=239)
    meter_call(agent_id=registered.agent.pk)
    set_calls_total(registered.agent, 299)
    meter_call(agent_id=registered.agent.pk)

    assert usage_events() == []
    assert queued_dispatches() == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_metered_call_leaves_no_event_and_no_job(registered):
    set_calls_total(registered.agent, 239)

    with pytest.raises(RuntimeError), transaction.atomic():
        assert meter_call(agent_id=registered.agent.pk).event_id is not None
        raise RuntimeError("the request failed")

    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 239
    assert usage_events() == []
    assert queued_dispatches() == []


@pytest.mark.requires_postgres
@pytest.mark.django_db
def test_a_hinted_call_records_the_event_too(registered):
    set_calls_total(registered.agent, 239)

    result = meter_call(
        agent_id=registered.agent.pk, hashed_key=hash_key(registered.api_key), tier="free"
    )

    assert (result.allowed, result.calls_total) == (True, 240)
    assert usage_events() == [("usage.near_limit", {"calls_total": 240, "call_limit": 300})]
    assert queued_dispatches() == [result.event_id]


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_crossing_both_marks_record_each_event_once(registered):
    set_calls_total(registered.agent, 230)
    calls = 80
    barrier = threading.Barrier(calls)

    def one_call(_: int) -> bool:
        try:
            barrier.wait(timeout=30)
            return meter_call(agent_id=registered.agent.pk).allowed
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=calls) as pool:
        results = list(pool.map(one_call, range(calls)))

    assert results.count(True) == 70
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 300
    assert sorted(usage_events()) == [
        ("usage.limit_reached", {"calls_total": 300, "call_limit": 300}),
        ("usage.near_limit", {"calls_total": 240, "call_limit": 300}),
    ]
    assert sorted(queued_dispatches()) == sorted(Event.objects.values_list("id", flat=True))
