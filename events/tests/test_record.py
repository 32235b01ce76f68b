import pytest
from django.db import transaction

from events.models import Event
from events.services import event_record
from events.tasks import event_dispatch
from testing.jobs import queued_dispatches


@pytest.mark.django_db(transaction=True)
def test_committed_change_has_its_event_and_its_job(make_agent):
    agent = make_agent().agent

    with transaction.atomic():
        event = event_record(agent=agent, type="agent.deleted", data={"reason": "test"})

    stored = Event.objects.get()
    assert stored.id == event.id and stored.id.startswith("evt_")
    assert (stored.agent_id, stored.type, stored.data) == (
        agent.id,
        "agent.deleted",
        {"reason": "test"},
    )
    assert stored.dispatched_at is None
    assert queued_dispatches() == [event.id]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_change_leaves_no_event_and_no_job(make_agent):
    agent = make_agent().agent

    with pytest.raises(RuntimeError, match="boom"), transaction.atomic():
        event_record(agent=agent, type="agent.deleted", data={})
        raise RuntimeError("boom")

    assert not Event.objects.exists()
    assert queued_dispatches() == []


@pytest.mark.django_db(transaction=True)
def test_event_record_outside_a_transaction_is_refused(make_agent):
    agent = make_agent().agent

    with pytest.raises(RuntimeError, match="inside the transaction"):
        event_record(agent=agent, type="agent.deleted", data={})

    assert not Event.objects.exists()


@pytest.mark.django_db
def test_unknown_event_type_is_refused(make_agent):
    agent = make_agent().agent

    with pytest.raises(ValueError), transaction.atomic():
        event_record(agent=agent, type="no.such.type", data={})

    assert not Event.objects.exists()


@pytest.mark.django_db
def test_event_dispatch_marks_the_event_once(make_agent):
    agent = make_agent().agent
    with transaction.atomic():
        event = event_record(agent=agent, type="key.leaked", data={"prefix": "ltx_abcd"})

    event_dispatch(event.id)
    first = Event.objects.get().dispatched_at
    event_dispatch(event.id)

    assert first is not None
    assert Event.objects.get().dispatched_at == first


@pytest.mark.django_db
def test_event_dispatch_of_an_unknown_event_does_nothing():
    event_dispatch("evt_missing")

    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_deleted_agents_webhook_hears_of_its_deletion_and_nothing_after_it(
    api_client, make_agent, settings
):
    from accounts.services import agent_delete
    from webhooks.models import WebhookDelivery
    from webhooks.services import webhook_set

    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = True
    agent = make_agent().agent
    webhook_set(agent=agent, url="http://127.0.0.1:9/hook")
    # Recorded before the deletion, dispatched after it (a queue running late).
    with transaction.atomic():
        before = event_record(agent=agent, type="key.leaked", data={"prefix": "ltx_abcd"})
    assert agent_delete(agent=agent)
    # Stripe's end of its subscription, say, recorded after the deletion.
    with transaction.atomic():
        later = event_record(
            agent=agent,
            type="billing.tier_changed",
            data={"from": "pro", "to": "free", "reason": "subscription_canceled"},
        )
    deleted = Event.objects.get(agent=agent, type="agent.deleted")

    for event in (before, deleted, later):
        event_dispatch(event.id)

    delivered = WebhookDelivery.objects.values_list("event_id", flat=True)
    assert sorted(delivered) == sorted([before.id, deleted.id])
    assert Event.objects.get(id=later.id).dispatched_at is not None
