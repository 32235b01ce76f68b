import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from standardwebhooks import Webhook

from events.models import Event
from events.services import event_record
from testing.servers import BlackHole
from webhooks import client, services
from webhooks.models import WebhookDelivery, WebhookEndpoint

WEBHOOK = "/v1/webhook"
DELIVERIES = "/v1/webhook/deliveries"
EVENT_DATA: dict[str, dict[str, Any]] = {
    # The shapes the project records (webhooks/payloads.py documents them).
    "key.leaked": {
        "prefix": "ltx_AbCd1234",
        "url": "https://github.com/octo/repo/blob/abc/config.py#L3",
        "source": "content",
    },
    "key.revoked_by_support": {"prefix": "ltx_AbCd1234"},
    "key.reissued_by_support": {"prefix": "ltx_Zy98XwVu", "revoked": ["ltx_AbCd1234"]},
    "usage.near_limit": {"calls_total": 240, "call_limit": 300},
    "usage.limit_reached": {"calls_total": 300, "call_limit": 300},
    "billing.tier_changed": {"from": "free", "to": "pro", "reason": "setup"},
    "billing.cancel_scheduled": {"cancel_at": "2027-01-03T10:00:00+00:00"},
    "billing.payment_failed": {
        "invoice_id": "in_1",
        "amount_due": 2000,
        "currency": "usd",
        "attempt_count": 1,
        "next_payment_attempt": None,
        "next": "subscription_ends_unless_card_updated",
    },
    "agent.deleted": {"source": "agent"},
}


def set_webhook(api_client, registered, url):
    response = api_client.put(WEBHOOK, {"url": url}, format="json", **registered.auth)
    assert response.status_code == 200
    return response.json()["secret"]


def record(agent, type_):
    with transaction.atomic():
        event = event_record(agent=agent, type=type_, data=EVENT_DATA[type_])
    return event


def attempt(delivery_id: str) -> WebhookDelivery:
    delivery = services.delivery_attempt(delivery_id=delivery_id)
    assert delivery is not None, "the delivery was not attempted"
    return delivery


def deliver(event):
    with transaction.atomic():
        delivery = services.webhook_deliveries_create(event=event)
    assert delivery is not None
    return attempt(delivery.id)


@pytest.mark.django_db
@pytest.mark.parametrize("type_", list(EVENT_DATA))
def test_each_event_type_arrives_signed_for_the_standard_verifier(
    api_client, registered, receiver, type_
):
    secret = set_webhook(api_client, registered, receiver.url)
    event = record(registered.agent, type_)

    delivery = deliver(event)

    assert delivery.status == "succeeded" and delivery.attempts == 1
    (request,) = receiver.received
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == type_
    assert payload["data"] == {"agent_id": str(registered.agent.id), **EVENT_DATA[type_]}
    assert request.headers["webhook-id"] == event.id
    assert registered.api_key not in request.body.decode()
    assert secret not in json.dumps(request.headers)


@pytest.mark.django_db
def test_a_receiver_that_fails_twice_gets_three_attempts_with_one_webhook_id(
    api_client, registered, receiver, clock
):
    receiver.statuses = [500, 503, 200]
    secret = set_webhook(api_client, registered, receiver.url)
    event = record(registered.agent, "key.leaked")

    first = deliver(event)
    assert first.status == "pending" and first.last_status_code == 500
    assert services.delivery_attempt(delivery_id=first.id) is None  # not due yet
    clock.advance(seconds=6)
    second = attempt(first.id)
    assert second.status == "pending" and second.last_status_code == 503
    assert second.next_attempt_at == clock.now + timedelta(minutes=5)
    clock.advance(minutes=5)
    assert services.deliveries_resume() == 1
    third = attempt(first.id)

    assert third.status == "succeeded" and third.attempts == 3
    assert [r.headers["webhook-id"] for r in receiver.received] == [event.id] * 3
    # Each attempt is signed anew at its own time (the verifier's 5-minute tolerance
    # is about the real clock, which this test moved on).
    for request in receiver.received:
        signed_at = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
        expected = Webhook(secret).sign(event.id, signed_at, request.body.decode())
        assert request.headers["webhook-signature"] == expected
    listed = api_client.get(DELIVERIES, **registered.auth).json()["deliveries"]
    assert listed == [
        {
            "id": first.id,
            "event_id": event.id,
            "type": "key.leaked",
            "status": "succeeded",
            "attempts": 3,
            "last_status_code": 200,
            "next_attempt_at": None,
        }
    ]


@pytest.mark.django_db
def test_an_attempt_that_raises_is_recorded_as_a_failure_and_retried(
    api_client, registered, receiver, clock, monkeypatch
):
    secret = set_webhook(api_client, registered, receiver.url)
    post = client.post

    def broken(url, **kwargs):
        raise UnicodeEncodeError("latin-1", f"Host {secret}", 5, 6, "not in range(256)")

    monkeypatch.setattr(client, "post", broken)
    delivery = deliver(record(registered.agent, "key.leaked"))

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error == "UnicodeEncodeError"
    assert delivery.next_attempt_at == clock.now + services.RETRY_DELAYS[0]
    endpoint = WebhookEndpoint.objects.get(agent=registered.agent)
    assert endpoint.failing_since == clock.now

    monkeypatch.setattr(client, "post", post)
    clock.advance(seconds=6)
    delivery = attempt(delivery.id)

    assert (delivery.status, delivery.attempts, delivery.last_error) == ("succeeded", 2, "")
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    assert len(receiver.received) == 1


def test_an_attempt_is_leased_for_longer_than_a_job_may_run(settings):
    lease = services.ATTEMPT_LEASE
    assert lease > timedelta(seconds=client.TIMEOUT_SECONDS * 10)
    assert lease > timedelta(seconds=settings.Q_CLUSTER["timeout"])


class WorkerKilled(BaseException):
    """The job system killing an attempt's worker: nothing after the claim runs."""


@pytest.mark.django_db
def test_a_delivery_whose_every_attempt_was_killed_fails_instead_of_retrying_forever(
    api_client, registered, receiver, clock, monkeypatch
):
    set_webhook(api_client, registered, receiver.url)

    def killed(url, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr(client, "post", killed)
    with transaction.atomic():
        delivery = services.webhook_deliveries_create(
            event=record(registered.agent, "usage.near_limit")
        )
    assert delivery is not None
    for _ in range(len(services.RETRY_DELAYS) + 1):
        with pytest.raises(WorkerKilled):
            services.delivery_attempt(delivery_id=delivery.id)
        delivery.refresh_from_db()
        assert delivery.status == "pending"
        clock.now = delivery.next_attempt_at  # the lease's end

    assert services.deliveries_resume() == 1
    failed = attempt(delivery.id)

    assert (failed.status, failed.attempts, failed.next_attempt_at) == (
        "failed",
        len(services.RETRY_DELAYS) + 1,
        None,
    )
    assert failed.last_error == "attempt interrupted"
    endpoint = WebhookEndpoint.objects.get(agent=registered.agent)
    assert endpoint.failing_since == clock.now
    assert services.deliveries_resume() == 0
    assert services.delivery_attempt(delivery_id=delivery.id) is None
    assert receiver.received == []


@pytest.mark.django_db
def test_an_endpoint_deleted_during_an_attempt_ends_it_quietly(
    api_client, registered, receiver, monkeypatch
):
    set_webhook(api_client, registered, receiver.url)
    with transaction.atomic():
        delivery = services.webhook_deliveries_create(event=record(registered.agent, "key.leaked"))
    assert delivery is not None
    post = client.post

    def post_then_delete(url, **kwargs):
        outcome = post(url, **kwargs)
        assert api_client.delete(WEBHOOK, **registered.auth).status_code == 204
        return outcome

    monkeypatch.setattr(client, "post", post_then_delete)

    assert services.delivery_attempt(delivery_id=delivery.id) is None
    assert len(receiver.received) == 1
    assert not WebhookEndpoint.objects.exists()
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_receiver_that_never_answers_is_disabled_after_the_configured_days(
    api_client, registered, settings, clock, monkeypatch
):
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = True
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    settings.LITHTRIX_WEBHOOK_DISABLE_AFTER_DAYS = 3
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 0.2)
    hole = BlackHole()
    try:
        set_webhook(api_client, registered, f"{hole.url}/hook")
        delivery = deliver(record(registered.agent, "usage.near_limit"))
        attempts = 1
        while delivery.status == "pending":
            clock.now = delivery.next_attempt_at
            delivery = attempt(delivery.id)
            attempts += 1
        assert delivery.status == "failed"
        endpoint = WebhookEndpoint.objects.get(agent=registered.agent)
        # The spec's schedule gives up after about a day, before the endpoint's 3 days.
        assert attempts == len(services.RETRY_DELAYS) + 1
        assert endpoint.disabled_at is None

        # Later events keep failing: still retried on day 2, disabled three days
        # after the first failure.
        clock.advance(days=1)
        delivery = deliver(record(registered.agent, "usage.limit_reached"))
        assert delivery.status == "pending"
        clock.advance(days=1)
        delivery = attempt(delivery.id)
        assert delivery.status == "failed"
        endpoint.refresh_from_db()
        assert endpoint.disabled_at == clock.now
    finally:
        hole.close()
    shown = api_client.get(WEBHOOK, **registered.auth).json()
    assert shown["disabled_at"] is not None
    # A disabled endpoint gets no new deliveries until a PUT re-enables it.
    with transaction.atomic():
        assert (
            services.webhook_deliveries_create(event=record(registered.agent, "agent.deleted"))
            is None
        )


@pytest.mark.django_db
def test_the_request_that_causes_an_event_is_not_slowed_by_a_dead_receiver(
    api_client, registered, settings
):
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = True
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    hole = BlackHole()
    try:
        set_webhook(api_client, registered, f"{hole.url}/hook")
        # Deleting the agent records agent.deleted; delivery is a job, not this request.
        response = api_client.delete(
            "/v1/me", {"confirm": registered.agent.agent_name}, format="json", **registered.auth
        )
        assert response.status_code == 204
        assert hole.accepted == 0
    finally:
        hole.close()


@pytest.mark.django_db
def test_dispatch_twice_creates_one_delivery(api_client, registered, receiver):
    set_webhook(api_client, registered, receiver.url)
    event = record(registered.agent, "key.leaked")
    with transaction.atomic():
        first = services.webhook_deliveries_create(event=event)
        second = services.webhook_deliveries_create(event=event)
    assert first is not None and second is not None
    assert first.id == second.id
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_a_name_rebinding_to_loopback_at_delivery_time_is_not_reached(
    api_client, registered, receiver, settings, monkeypatch
):
    port = int(receiver.url.split(":")[2].split("/")[0])
    answers = {"now": "93.184.215.14"}

    def rebinding(host, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers["now"], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = False
    # Public when the URL is set...
    set_webhook(api_client, registered, receiver.url.replace("127.0.0.1", "rebind.example"))
    # ...loopback when the delivery resolves it.
    answers["now"] = "127.0.0.1"
    delivery = deliver(record(registered.agent, "key.leaked"))

    assert delivery.status == "pending" and delivery.last_status_code is None
    assert "not public" in delivery.last_error
    assert receiver.received == []


@pytest.mark.django_db
def test_events_never_delivered_for_an_agent_without_endpoint(registered):
    event = record(registered.agent, "key.leaked")
    with transaction.atomic():
        assert services.webhook_deliveries_create(event=event) is None
    assert Event.objects.filter(id=event.id).exists()


@pytest.mark.django_db
def test_event_dispatch_creates_the_delivery_and_its_first_attempt(
    api_client, registered, receiver
):
    import inspect

    from django_q.models import OrmQ

    from events.tasks import event_dispatch

    set_webhook(api_client, registered, receiver.url)
    event = record(registered.agent, "key.revoked_by_support")

    inspect.unwrap(event_dispatch)(event.id)
    inspect.unwrap(event_dispatch)(event.id)

    (delivery,) = WebhookDelivery.objects.all()
    assert (delivery.event_id, delivery.status, delivery.attempts) == (event.id, "pending", 0)
    queued = [task.func() for task in OrmQ.objects.all()]
    assert queued.count("webhooks.tasks.delivery_attempt") == 1
