"""api_key_reissue: support's "new key for a lost one", and its guard against a stale page."""

from __future__ import annotations

import pytest

from keys.crypto import hash_key
from keys.models import ApiKey, KeyEvent
from keys.services import api_key_reissue, api_key_revoke


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
