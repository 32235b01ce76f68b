"""api_key_reissue: support's "new key for a lost one", and its guard against a stale page."""

from __future__ import annotations

import pytest

from events.models import Event
from keys.crypto import hash_key
from keys.models import ApiKey, KeyEvent
from keys.services import api_key_reissue, api_key_revoke
from testing.jobs import queued_dispatches


def active_ids(agent) -> list[int]:
    return list(
        ApiKey.objects.filter(agent=agent, revoked_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_reissue_with_the_keys_shown_revokes_them_and_issues_one(registered, admin_user):
    shown = active_ids(registered.agent)

    new_key = api_key_reissue(
        agent=registered.agent, actor=admin_user, reason="lost", expected_working_keys=shown
    )

    assert new_key is not None
    assert active_ids(registered.agent) == [ApiKey.objects.get(hashed_key=hash_key(new_key)).pk]
    assert KeyEvent.objects.filter(actor=admin_user, reason="lost").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["reissued", "revoked"], ids=["second-submit", "revoked-since"])
def test_reissue_from_a_stale_page_does_nothing(registered, admin_user, change):
    shown = active_ids(registered.agent)
    if change == "reissued":
        api_key_reissue(agent=registered.agent, actor=admin_user, expected_working_keys=shown)
    else:
        api_key_revoke(api_key=ApiKey.objects.get(agent=registered.agent), actor=admin_user)

    def state() -> tuple:
        return ApiKey.objects.count(), KeyEvent.objects.count(), active_ids(registered.agent)

    before = state()

    again = api_key_reissue(agent=registered.agent, actor=admin_user, expected_working_keys=shown)

    assert again is None
    assert (
        ApiKey.objects.count(),
        KeyEvent.objects.count(),
        active_ids(registered.agent),
    ) == before


@pytest.mark.django_db
def test_reissue_without_expected_keys_always_reissues(registered, admin_user):
    api_key_revoke(api_key=ApiKey.objects.get(agent=registered.agent), actor=admin_user)

    new_key = api_key_reissue(agent=registered.agent, actor=admin_user)

    assert new_key is not None and len(active_ids(registered.agent)) == 1


def events_of(agent) -> list[tuple[str, dict]]:
    return list(Event.objects.filter(agent=agent).values_list("type", "data"))


@pytest.mark.django_db
def test_reissue_tells_the_owner_once_for_all_its_keys(registered, admin_user):
    old = ApiKey.objects.get(agent=registered.agent)

    new_key = api_key_reissue(agent=registered.agent, actor=admin_user, reason="lost")

    assert new_key is not None
    assert events_of(registered.agent) == [
        ("key.reissued_by_support", {"prefix": new_key[:12], "revoked": [old.prefix]})
    ]
    assert len(queued_dispatches()) == 1


@pytest.mark.django_db
def test_a_stale_reissue_tells_nothing(registered, admin_user):
    api_key_reissue(agent=registered.agent, actor=admin_user, expected_working_keys=[0])

    assert events_of(registered.agent) == []


@pytest.mark.django_db
def test_a_key_revoked_by_staff_is_told_to_the_owner_and_one_revoked_by_the_agent_is_not(
    make_agent, admin_user
):
    by_staff, by_agent = make_agent(), make_agent()
    staff_key = ApiKey.objects.get(agent=by_staff.agent)

    assert api_key_revoke(api_key=staff_key, actor=admin_user, reason="abuse")
    assert not api_key_revoke(api_key=staff_key, actor=admin_user, reason="again")
    assert api_key_revoke(api_key=ApiKey.objects.get(agent=by_agent.agent))

    assert events_of(by_staff.agent) == [("key.revoked_by_support", {"prefix": staff_key.prefix})]
    assert events_of(by_agent.agent) == []
