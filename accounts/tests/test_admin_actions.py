"""Support actions in the admin: effect, audit row naming the staff user, key shown once."""

from __future__ import annotations

import logging
import threading

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client

from accounts.models import Agent, AgentEvent, Tier
from accounts.services import agent_set_tier
from accounts.tests.conftest import agent_url, set_calls
from events.models import Event
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey, KeyEvent
from keys.selectors import working_api_key_with_agent
from testing.jobs import queued_dispatches


def working_keys(agent) -> str:
    """The reissue form's hidden field, as the confirmation page fills it in."""
    ids = ApiKey.objects.filter(agent=agent, revoked_at__isnull=True).order_by("pk")
    return ",".join(str(pk) for pk in ids.values_list("pk", flat=True))


@pytest.mark.django_db
def test_reissue_key_page_asks_for_confirmation_first(admin_client, registered):
    response = admin_client.get(agent_url(registered.agent, "reissue-key"))

    assert response.status_code == 200
    assert "Reissue API key" in response.content.decode()
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is None


@pytest.mark.django_db
def test_reissue_key_revokes_the_old_key_and_shows_the_new_one_once(
    admin_client, admin_user, registered, api_client, caplog
):
    caplog.set_level(logging.DEBUG)
    response = admin_client.post(
        agent_url(registered.agent, "reissue-key"),
        {"reason": "owner lost the key", "working_keys": working_keys(registered.agent)},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new_key = response.context["api_key"]
    assert is_well_formed(new_key)
    html = response.content.decode()
    assert html.count(new_key) == 1
    assert 'id="new-api-key"' in html and f">{new_key}</code>" in html
    # Database: old key revoked, new one active, only its hash stored.
    old, new = (
        ApiKey.objects.get(hashed_key=hash_key(registered.api_key)),
        ApiKey.objects.get(hashed_key=hash_key(new_key)),
    )
    assert old.revoked_at is not None and new.revoked_at is None
    assert working_api_key_with_agent(key=registered.api_key) is None
    found = working_api_key_with_agent(key=new_key)
    assert found is not None and found.agent == registered.agent
    # The API agrees.
    assert api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {new_key}").status_code == 200
    assert (
        api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {registered.api_key}").status_code
        == 401
    )
    # Audit: both key events name the staff user and the reason.
    events = KeyEvent.objects.filter(agent=registered.agent, actor=admin_user)
    assert sorted((e.kind, e.api_key_id, e.reason) for e in events) == sorted(
        [("revoked", old.pk, "owner lost the key"), ("issued", new.pk, "owner lost the key")]
    )
    # The key is in that one response body only: no message, session, log or history.
    assert list(get_messages(response.wsgi_request)) == []
    assert new_key not in str(dict(admin_client.session))
    assert new_key not in caplog.text
    assert all(new_key not in entry.change_message for entry in LogEntry.objects.all())
    assert LogEntry.objects.filter(object_id=str(registered.agent.pk)).count() == 1
    page_again = admin_client.get(agent_url(registered.agent))
    assert new_key not in page_again.content.decode()
    assert f"{new_key[:12]}…" in page_again.content.decode()


@pytest.mark.django_db
def test_reissue_key_submitted_twice_reissues_once(admin_client, registered):
    url = agent_url(registered.agent, "reissue-key")
    form = admin_client.get(url).context["form"]
    data = {"reason": "lost", "working_keys": form["working_keys"].value()}

    first = admin_client.post(url, data)
    second = admin_client.post(url, data, follow=True)  # double click, or a reload

    assert first.status_code == 200 and "api_key" in first.context
    assert "nothing was done" in second.content.decode()
    assert "api_key" not in second.context
    active = ApiKey.objects.get(agent=registered.agent, revoked_at__isnull=True)
    assert active.hashed_key == hash_key(first.context["api_key"])
    assert ApiKey.objects.filter(agent=registered.agent).count() == 2


@pytest.mark.django_db
def test_revoke_key_revokes_it_with_audit_row(admin_client, admin_user, registered):
    api_key = ApiKey.objects.get(agent=registered.agent)
    url = agent_url(registered.agent, f"keys/{api_key.pk}/revoke")

    response = admin_client.post(url, {"reason": "leaked in a public repo"})

    assert response.status_code == 302
    assert response["Location"] == agent_url(registered.agent)
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    event = KeyEvent.objects.get(api_key=api_key, kind="revoked")
    assert (event.actor, event.reason) == (admin_user, "leaked in a public repo")
    # Revoked means no key is left: no new one is issued.
    assert not ApiKey.objects.filter(agent=registered.agent, revoked_at__isnull=True).exists()

    again = admin_client.post(url, {"reason": "twice"}, follow=True)
    assert "was already revoked" in again.content.decode()
    assert KeyEvent.objects.filter(api_key=api_key, kind="revoked").count() == 1


@pytest.mark.django_db
def test_revoke_key_of_another_agent_is_404(admin_client, make_agent):
    mine, theirs = make_agent().agent, make_agent()
    their_key = ApiKey.objects.get(agent=theirs.agent)

    response = admin_client.post(agent_url(mine, f"keys/{their_key.pk}/revoke"), {})

    assert response.status_code == 404
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "target"), [("free", "pro"), ("pro", "free")], ids=["grant", "remove"]
)
def test_set_tier_by_hand_with_audit_row(admin_client, admin_user, registered, start, target):
    agent_set_tier(agent=registered.agent, tier=start)

    page = admin_client.get(agent_url(registered.agent, "set-tier"), {"tier": target})
    response = admin_client.post(
        agent_url(registered.agent, "set-tier"), {"tier": target, "reason": "goodwill"}
    )

    assert page.status_code == 200
    assert f"Set tier to {Tier(target).label}" in page.content.decode()
    assert response.status_code == 302
    assert Agent.objects.get(pk=registered.agent.pk).tier == target
    event = AgentEvent.objects.filter(agent=registered.agent, kind="tier_changed").first()
    assert event is not None
    assert (event.actor, event.reason, event.data) == (
        admin_user,
        "goodwill",
        {"tier": target, "source": "admin"},
    )


@pytest.mark.django_db
def test_set_tier_twice_writes_one_audit_row(admin_client, registered):
    url = agent_url(registered.agent, "set-tier")

    admin_client.post(url, {"tier": "pro"})
    again = admin_client.post(url, {"tier": "pro"}, follow=True)

    assert "already on Pro" in again.content.decode()
    assert AgentEvent.objects.filter(agent=registered.agent, kind="tier_changed").count() == 1


@pytest.mark.django_db
def test_set_tier_refuses_an_unknown_tier(admin_client, registered):
    response = admin_client.post(agent_url(registered.agent, "set-tier"), {"tier": "gold"})

    assert response.status_code == 200  # the form again, with its error
    assert response.context["form"].errors["tier"]
    assert Agent.objects.get(pk=registered.agent.pk).tier == "free"


@pytest.mark.django_db
def test_reset_usage_needs_a_reason(admin_client, registered):
    set_calls(registered.agent, 500)

    response = admin_client.post(agent_url(registered.agent, "reset-usage"), {"reason": "  "})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == ["This field is required."]
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 500
    assert not AgentEvent.objects.filter(kind="usage_reset").exists()


@pytest.mark.django_db
def test_reset_usage_sets_counter_to_zero_with_audit_row(admin_client, admin_user, registered):
    set_calls(registered.agent, 500)

    response = admin_client.post(
        agent_url(registered.agent, "reset-usage"),
        {"reason": "billing bug on our side"},
        follow=True,
    )

    assert response.status_code == 200
    assert "Usage counter reset from 500 to 0" in response.content.decode()
    assert Agent.objects.get(pk=registered.agent.pk).calls_total == 0
    event = AgentEvent.objects.get(agent=registered.agent, kind="usage_reset")
    assert (event.actor, event.reason, event.data) == (
        admin_user,
        "billing bug on our side",
        {"previous_calls_total": 500},
    )


@pytest.mark.django_db
def test_actions_on_an_unknown_agent_are_404(admin_client):
    response = admin_client.post(
        "/admin/accounts/agent/00000000-0000-0000-0000-000000000000/reset-usage/", {"reason": "x"}
    )

    assert response.status_code == 404


@pytest.mark.django_db
def test_key_list_revoke_action_revokes_with_actor(admin_client, admin_user, make_agent):
    keys = [ApiKey.objects.get(agent=make_agent().agent) for _ in range(2)]

    response = admin_client.post(
        "/admin/keys/apikey/",
        {"action": "revoke_keys", "_selected_action": [k.pk for k in keys]},
        follow=True,
    )

    assert "Revoked 2 key(s)." in response.content.decode()
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0
    assert KeyEvent.objects.filter(kind="revoked", actor=admin_user).count() == 2


def bulk(client, action: str, agents, **extra):
    data = {"action": action, "_selected_action": [str(a.pk) for a in agents], **extra}
    return client.post("/admin/accounts/agent/", data, follow="confirm" in extra)


@pytest.mark.django_db
def test_bulk_grant_pro_confirms_then_sets_tier_with_audit_rows(
    admin_client, admin_user, make_agent
):
    chosen = [make_agent().agent for _ in range(2)]
    bystander = make_agent().agent

    confirm_page = bulk(admin_client, "grant_pro", chosen)
    assert confirm_page.status_code == 200
    assert {a.pk for a in confirm_page.context["agents"]} == {a.pk for a in chosen}
    assert Agent.objects.filter(tier="pro").count() == 0  # nothing yet

    done = bulk(admin_client, "grant_pro", chosen, confirm="yes", reason="partner programme")

    assert "Tier set to Pro by hand: 2 agent(s)." in done.content.decode()
    assert set(Agent.objects.filter(tier="pro")) == set(chosen)
    assert Agent.objects.get(pk=bystander.pk).tier == "free"
    events = AgentEvent.objects.filter(kind="tier_changed")
    assert sorted((e.agent_id, e.actor, e.reason) for e in events) == sorted(
        (a.pk, admin_user, "partner programme") for a in chosen
    )


@pytest.mark.django_db
def test_bulk_reset_usage_needs_a_reason(admin_client, admin_user, make_agent):
    agents = [set_calls(make_agent().agent, 700) for _ in range(2)]

    refused = bulk(admin_client, "reset_usage", agents, confirm="yes", reason="")
    assert refused.status_code == 200 and refused.context["form"].errors["reason"]
    assert list(Agent.objects.values_list("calls_total", flat=True)) == [700, 700]

    done = bulk(admin_client, "reset_usage", agents, confirm="yes", reason="incident 42")

    assert "Usage counter reset to 0: 2 agent(s)." in done.content.decode()
    assert list(Agent.objects.values_list("calls_total", flat=True)) == [0, 0]
    assert AgentEvent.objects.filter(kind="usage_reset", actor=admin_user).count() == 2


@pytest.mark.django_db
def test_bulk_actions_refuse_more_than_the_limit(admin_client, make_agent, monkeypatch):
    from accounts.admin import bulk as agent_admin

    monkeypatch.setattr(agent_admin, "BULK_LIMIT", 2)
    agents = [make_agent().agent for _ in range(3)]

    response = bulk(admin_client, "grant_pro", agents, confirm="yes", reason="all of them")

    assert "Select at most 2 agents" in response.content.decode()
    assert not Agent.objects.filter(tier="pro").exists()


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_reissue_key_submitted_twice_at_once_reissues_once(admin_user, make_agent):
    registered = make_agent()
    url = agent_url(registered.agent, "reissue-key")
    data = {"reason": "lost", "working_keys": working_keys(registered.agent)}
    clients = [Client() for _ in range(2)]
    for client in clients:
        client.force_login(admin_user)
    start = threading.Barrier(len(clients))
    statuses: list[int] = []

    def submit(client: Client) -> None:
        try:
            start.wait()
            statuses.append(client.post(url, data).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 302]  # one new-key page, one "nothing was done"
    assert ApiKey.objects.filter(agent=registered.agent).count() == 2
    assert ApiKey.objects.filter(agent=registered.agent, revoked_at__isnull=True).count() == 1
    assert KeyEvent.objects.filter(agent=registered.agent, actor=admin_user).count() == 2


def events_of(agent) -> list[tuple[str, dict]]:
    return list(Event.objects.filter(agent=agent).values_list("type", "data"))


@pytest.mark.django_db
def test_admin_revoke_key_tells_the_owner_once(admin_client, registered):
    api_key = ApiKey.objects.get(agent=registered.agent)
    url = agent_url(registered.agent, f"keys/{api_key.pk}/revoke")

    admin_client.post(url, {"reason": "leaked"})
    admin_client.post(url, {"reason": "twice"})

    assert events_of(registered.agent) == [("key.revoked_by_support", {"prefix": api_key.prefix})]
    assert len(queued_dispatches()) == 1


@pytest.mark.django_db
def test_admin_reissue_key_tells_the_owner(admin_client, registered):
    old = ApiKey.objects.get(agent=registered.agent)

    admin_client.post(
        agent_url(registered.agent, "reissue-key"),
        {"reason": "lost", "working_keys": working_keys(registered.agent)},
    )

    [(kind, data)] = events_of(registered.agent)
    new = ApiKey.objects.get(agent=registered.agent, revoked_at__isnull=True)
    assert (kind, data) == (
        "key.reissued_by_support",
        {"prefix": new.prefix, "revoked": [old.prefix]},
    )


@pytest.mark.django_db
def test_admin_tier_change_tells_the_owner_once(admin_client, registered):
    url = agent_url(registered.agent, "set-tier")

    admin_client.post(url, {"tier": "pro", "reason": "goodwill"})
    admin_client.post(url, {"tier": "pro", "reason": "goodwill"})

    assert events_of(registered.agent) == [
        ("billing.tier_changed", {"from": "free", "to": "pro", "reason": "support"})
    ]


@pytest.mark.django_db
def test_bulk_tier_change_tells_each_owner(admin_client, make_agent):
    agents = [make_agent().agent for _ in range(2)]

    bulk(admin_client, "grant_pro", agents, confirm="yes", reason="partners")

    for agent in agents:
        assert events_of(agent) == [
            ("billing.tier_changed", {"from": "free", "to": "pro", "reason": "support"})
        ]


@pytest.mark.django_db
def test_a_tier_change_without_staff_is_not_recorded_here(registered):
    agent_set_tier(agent=registered.agent, tier="pro", reason="Stripe")

    assert events_of(registered.agent) == []
