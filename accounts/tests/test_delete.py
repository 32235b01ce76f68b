"""DELETE /v1/me and the admin's "Delete agent" action."""

import pytest
from django.contrib.auth import get_user_model
from django.db.models import ProtectedError
from django.test import Client

from accounts.models import Agent, AgentEvent
from accounts.signals import agent_deletion_requested
from billing.models import DailyUsage
from events.models import Event
from keys.models import ApiKey, KeyEvent
from lithtrix.core.exceptions import PaymentProviderError
from testing.assertions import assert_envelope
from testing.jobs import queued_dispatches

ME = "/v1/me"


def delete(client, registered, body, **extra):
    return client.delete(ME, body, format="json", **registered.auth, **extra)


@pytest.mark.django_db
def test_delete_erases_the_agent_revokes_its_keys_and_keeps_usage_and_audit(api_client, registered):
    agent = registered.agent
    rotated = api_client.post(
        "/v1/keys/rotate", {"previous_key_expires_in": 600}, format="json", **registered.auth
    ).json()["api_key"]
    Agent.objects.filter(pk=agent.pk).update(calls_total=7)
    DailyUsage.objects.create(agent=agent, date="2026-01-02", calls=7)

    response = delete(api_client, registered, {"confirm": "my-agent"}, REMOTE_ADDR="203.0.113.5")

    assert response.status_code == 204
    assert response.content == b""
    agent.refresh_from_db()
    assert agent.deleted_at is not None
    assert agent.agent_name == agent.owner_identifier == f"deleted-{agent.pk}"
    assert agent.calls_total == 7
    assert DailyUsage.objects.filter(agent=agent).count() == 1
    assert not ApiKey.objects.filter(agent=agent, revoked_at__isnull=True).exists()
    for key in (registered.api_key, rotated):
        assert_envelope(
            api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {key}"), 401, "INVALID_API_KEY"
        )
    kinds = list(
        AgentEvent.objects.filter(agent=agent).order_by("id").values_list("kind", flat=True)
    )
    assert kinds == ["registered", "deleted"]
    assert KeyEvent.objects.filter(agent=agent, kind="revoked").count() == 2
    # The audit rows are kept without personal fields.
    assert not AgentEvent.objects.filter(agent=agent, ip__isnull=False).exists()
    assert not KeyEvent.objects.filter(agent=agent, ip__isnull=False).exists()
    assert "you@example.com" not in str(list(AgentEvent.objects.filter(agent=agent).values()))


@pytest.mark.django_db
def test_the_pair_can_register_again_as_a_new_agent(api_client, registered):
    delete(api_client, registered, {"confirm": "my-agent"})

    response = api_client.post(
        "/v1/register",
        {"agent_name": "my-agent", "owner_identifier": "you@example.com"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["agent_id"] != str(registered.agent.pk)


@pytest.mark.django_db
def test_a_live_agent_registered_under_the_tombstone_pair_blocks_no_deletion(
    api_client, registered
):
    # The agent's id is no secret (the gateway passes X-Agent-Id on): anyone may
    # register the pair its deletion will write.
    tombstone = f"deleted-{registered.agent.pk}"
    squatter = api_client.post(
        "/v1/register",
        {"agent_name": tombstone, "owner_identifier": tombstone},
        format="json",
    )
    assert squatter.status_code == 201

    response = delete(api_client, registered, {"confirm": "my-agent"})

    assert response.status_code == 204
    gone = Agent.objects.get(pk=registered.agent.pk)
    assert (gone.agent_name, gone.owner_identifier) == (tombstone, tombstone)
    assert gone.deleted_at is not None
    live = Agent.objects.get(pk=squatter.json()["agent_id"])
    assert (live.agent_name, live.deleted_at) == (tombstone, None)
    # The pair stays unique among live agents.
    again = api_client.post(
        "/v1/register", {"agent_name": tombstone, "owner_identifier": tombstone}, format="json"
    )
    assert_envelope(again, 409, "AGENT_ALREADY_EXISTS")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"confirm": "someone-else"},
        {"confirm": 42},
        {"confirm": None},
        {"confirm": ["my-agent"]},
    ],
    ids=["missing", "mismatch", "number", "null", "list"],
)
@pytest.mark.django_db
def test_delete_without_the_right_confirmation_is_400_and_changes_nothing(
    api_client, registered, body
):
    response = delete(api_client, registered, body)

    payload = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert list(payload["details"]) == ["confirm"]
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.deleted_at is None and agent.agent_name == "my-agent"
    assert api_client.get(ME, **registered.auth).status_code == 200


@pytest.mark.django_db
def test_delete_without_a_key_is_401(api_client):
    assert_envelope(api_client.delete(ME, {"confirm": "x"}, format="json"), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_a_receiver_raising_aborts_the_deletion_with_nothing_changed(api_client, registered):
    calls = []

    def stripe_down(sender, agent, **kwargs):
        calls.append((sender, agent.pk))
        raise PaymentProviderError()

    agent_deletion_requested.connect(stripe_down)
    try:
        response = delete(api_client, registered, {"confirm": "my-agent"})
    finally:
        agent_deletion_requested.disconnect(stripe_down)

    assert_envelope(response, 502, "PAYMENT_PROVIDER_ERROR")
    assert calls == [(Agent, registered.agent.pk)]
    assert Agent.objects.get(pk=registered.agent.pk).deleted_at is None
    assert api_client.get(ME, **registered.auth).status_code == 200


@pytest.mark.django_db
def test_audit_rows_protect_the_agent_from_a_cascading_delete(registered):
    with pytest.raises(ProtectedError):
        Agent.objects.filter(pk=registered.agent.pk).delete()


@pytest.fixture
def superuser_client(db) -> Client:
    user = get_user_model().objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_delete_agent_goes_through_the_service(superuser_client, registered):
    url = f"/admin/accounts/agent/{registered.agent.pk}/delete-agent/"
    page = superuser_client.get(f"/admin/accounts/agent/{registered.agent.pk}/change/")
    assert url in page.content.decode()
    assert superuser_client.get(url).status_code == 200

    response = superuser_client.post(url, {"reason": "owner asked by email"})

    assert response.status_code == 302
    agent = Agent.objects.get(pk=registered.agent.pk)
    assert agent.deleted_at is not None
    event = AgentEvent.objects.get(agent=agent, kind="deleted")
    assert event.actor is not None
    assert event.actor.username == "root" and event.reason == "owner asked by email"
    assert (
        url
        not in superuser_client.get(f"/admin/accounts/agent/{agent.pk}/change/").content.decode()
    )


@pytest.mark.django_db
def test_admin_has_no_cascading_delete_for_agents(superuser_client, registered):
    response = superuser_client.post(
        f"/admin/accounts/agent/{registered.agent.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert Agent.objects.filter(pk=registered.agent.pk, deleted_at__isnull=True).exists()


@pytest.mark.django_db
def test_admin_delete_needs_the_delete_permission(staff_client_with, registered):
    client, _user = staff_client_with()
    response = client.post(f"/admin/accounts/agent/{registered.agent.pk}/delete-agent/", {})
    assert response.status_code == 403
    assert Agent.objects.get(pk=registered.agent.pk).deleted_at is None


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_rotation_racing_the_deletion_leaves_no_working_key(make_agent):
    import threading

    from django.db import connection
    from rest_framework.test import APIClient

    registered = make_agent(name="racer")
    barrier = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def call(name: str, send) -> None:
        client = APIClient()
        barrier.wait()
        try:
            statuses[name] = send(client).status_code
        finally:
            connection.close()

    threads = [
        threading.Thread(
            target=call,
            args=(
                "delete",
                lambda c: c.delete(ME, {"confirm": "racer"}, format="json", **registered.auth),
            ),
        ),
        threading.Thread(
            target=call,
            args=(
                "rotate",
                lambda c: c.post(
                    "/v1/keys/rotate",
                    {"previous_key_expires_in": 600},
                    format="json",
                    **registered.auth,
                ),
            ),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses["delete"] == 204
    assert statuses["rotate"] in {200, 401}
    assert not ApiKey.objects.filter(agent=registered.agent, revoked_at__isnull=True).exists()
    assert Agent.objects.get(pk=registered.agent.pk).deleted_at is not None


@pytest.mark.django_db
def test_delete_tells_the_owner_it_erases(api_client, registered):
    delete(api_client, registered, {"confirm": "my-agent"})
    delete(api_client, registered, {"confirm": "my-agent"})

    [event] = Event.objects.filter(agent=registered.agent)
    # The event is kept: no personal field in it (the name and owner are erased).
    assert (event.type, event.data) == ("agent.deleted", {"source": "agent"})
    assert queued_dispatches() == [event.id]


@pytest.mark.django_db(transaction=True)
def test_a_deletion_rolled_back_leaves_no_event_and_no_job(registered, monkeypatch):
    from accounts import services

    def fail(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "api_keys_revoke_all", fail)

    with pytest.raises(RuntimeError):
        services.agent_delete(agent=registered.agent)

    assert Agent.objects.get(pk=registered.agent.pk).deleted_at is None
    assert not Event.objects.exists()
    assert queued_dispatches() == []
