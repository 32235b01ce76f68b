"""The support group views everything and acts on nothing; each action has its own permission."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from accounts.models import Agent, AgentEvent
from accounts.tests.conftest import AGENTS_URL, agent_url, set_calls
from keys.models import ApiKey, KeyEvent

ACTION_BUTTONS = ("Reissue key", "Grant Pro", "Reset usage", ">Revoke<")


def action_posts(agent: Agent) -> dict[str, tuple[str, dict]]:
    key = ApiKey.objects.get(agent=agent)
    return {
        "accounts.reissue_key": (
            agent_url(agent, "reissue-key"),
            {"reason": "x", "working_keys": str(key.pk)},
        ),
        "keys.revoke_apikey": (agent_url(agent, f"keys/{key.pk}/revoke"), {"reason": "x"}),
        "accounts.change_tier": (agent_url(agent, "set-tier"), {"tier": "pro", "reason": "x"}),
        "accounts.reset_usage": (agent_url(agent, "reset-usage"), {"reason": "x"}),
    }


def nothing_changed(agent: Agent) -> bool:
    fresh = Agent.objects.get(pk=agent.pk)
    return (
        fresh.tier == "free"
        and fresh.calls_total == 42
        and not ApiKey.objects.filter(agent=agent, revoked_at__isnull=False).exists()
        and not KeyEvent.objects.exclude(kind="issued").exists()
        and ApiKey.objects.filter(agent=agent).count() == 1
        and not AgentEvent.objects.exclude(kind="registered").exists()
    )


@pytest.mark.django_db
def test_support_group_has_view_permissions_only(support_user):
    group = Group.objects.get(name="support")
    codenames = set(group.permissions.values_list("codename", flat=True))

    assert {
        "view_agent",
        "view_agentevent",
        "view_apikey",
        "view_keyevent",
        "view_dailyusage",
    } <= codenames
    assert all(codename.startswith("view_") for codename in codenames)


@pytest.mark.django_db
def test_support_group_command_is_idempotent_and_adds_staff(db):
    user = get_user_model().objects.create_user(username="newhire")

    call_command("support_group")
    call_command("support_group", add=["newhire"])

    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["support"]
    assert Group.objects.filter(name="support").count() == 1


@pytest.mark.django_db
def test_support_user_sees_every_page_and_no_action(support_client, make_agent):
    agent = set_calls(make_agent(name="watched").agent, 42)

    pages = [
        "/admin/",
        AGENTS_URL,
        f"{AGENTS_URL}?over_limit=yes",
        agent_url(agent),
        "/admin/keys/apikey/",
        "/admin/keys/keyevent/",
        "/admin/accounts/agentevent/",
        "/admin/billing/dailyusage/",
    ]
    for url in pages:
        response = support_client.get(url)
        assert response.status_code == 200, url
    detail = support_client.get(agent_url(agent)).content.decode()
    for button in ACTION_BUTTONS:
        assert button not in detail
    assert (
        "Revoke the selected keys" not in support_client.get("/admin/keys/apikey/").content.decode()
    )
    assert "Usage" in support_client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_support_user_gets_403_on_every_action(support_client, make_agent):
    agent = set_calls(make_agent().agent, 42)

    for perm, (url, data) in action_posts(agent).items():
        assert support_client.get(url).status_code == 403, perm
        assert support_client.post(url, data).status_code == 403, perm
    response = support_client.post(
        "/admin/keys/apikey/",
        {"action": "revoke_keys", "_selected_action": [ApiKey.objects.get(agent=agent).pk]},
    )
    assert response.status_code == 200  # Django answers "no action selected" for an unknown one
    assert nothing_changed(agent)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "granted",
    ["accounts.reissue_key", "keys.revoke_apikey", "accounts.change_tier", "accounts.reset_usage"],
)
def test_each_action_needs_its_own_permission(staff_client_with, make_agent, granted):
    agent = set_calls(make_agent().agent, 42)
    client, user = staff_client_with(granted)
    posts = action_posts(agent)

    for perm, (url, data) in posts.items():
        if perm != granted:
            assert client.post(url, data).status_code == 403, perm
    assert nothing_changed(agent)
    url, data = posts[granted]
    assert client.post(url, data).status_code in (200, 302)
    assert not nothing_changed(agent)
    assert (
        KeyEvent.objects.filter(actor=user).exists()
        or AgentEvent.objects.filter(actor=user).exists()
    )


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client, registered):
    response = client.post(agent_url(registered.agent, "reissue-key"), {})

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is None


@pytest.mark.django_db
def test_support_user_has_no_bulk_actions(support_client, make_agent):
    agent = set_calls(make_agent().agent, 42)

    page = support_client.get(AGENTS_URL)
    response = support_client.post(
        AGENTS_URL,
        {
            "action": "reset_usage",
            "_selected_action": [str(agent.pk)],
            "confirm": "yes",
            "reason": "x",
        },
    )

    assert 'name="action"' not in page.content.decode()
    assert response.status_code in (200, 302)
    assert nothing_changed(agent)


@pytest.mark.django_db
def test_bulk_tier_action_needs_change_tier(staff_client_with, make_agent):
    agent = set_calls(make_agent().agent, 42)
    client, _ = staff_client_with("accounts.reset_usage")

    page = client.get(AGENTS_URL).content.decode()
    client.post(
        AGENTS_URL,
        {"action": "grant_pro", "_selected_action": [str(agent.pk)], "confirm": "yes"},
    )

    assert 'value="reset_usage"' in page and 'value="grant_pro"' not in page
    assert Agent.objects.get(pk=agent.pk).tier == "free"
