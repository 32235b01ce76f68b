"""End to end, in Debian's Chromium: a staff member finds an over-limit agent and
reissues its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Agent
from accounts.services import agent_register
from accounts.tests.conftest import set_calls
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey

ARTIFACTS = Path(settings.BASE_DIR) / "artifacts"


@pytest.mark.django_db(transaction=True)
def test_staff_filters_over_limit_agents_and_reissues_a_key(
    live_server, page: Page, django_user_model
):
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1600, "height": 900})
    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct-horse-42")
    greedy = agent_register(agent_name="greedy-bot", owner_identifier="greedy@example.com")
    set_calls(greedy.agent, settings.LITHTRIX_FREE_CALL_LIMIT + 25)
    Agent.objects.filter(pk=greedy.agent.pk).update(last_call_at=timezone.now())
    agent_register(agent_name="calm-bot", owner_identifier="calm@example.com")

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "correct-horse-42")
    page.click("input[type=submit]")
    expect(page.locator("#summary-over-limit")).to_have_text("1")

    page.goto(f"{live_server.url}/admin/accounts/agent/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.locator('details[data-filter-title="over limit"] a', has_text="Yes").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("greedy-bot")
    expect(rows.first.locator('img[alt="True"]')).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "admin-over-limit.png", full_page=True)

    rows.first.get_by_role("link", name="greedy-bot").click()
    expect(page.locator("#api-keys")).to_contain_text(greedy.api_key[:12])
    page.get_by_role("link", name="Reissue key").click()
    page.fill("#id_reason", "owner lost the key")
    page.click("#confirm-action")

    new_key = page.locator("#new-api-key").inner_text().strip()
    assert is_well_formed(new_key) and new_key != greedy.api_key
    assert ApiKey.objects.get(hashed_key=hash_key(new_key)).revoked_at is None
    assert ApiKey.objects.get(hashed_key=hash_key(greedy.api_key)).revoked_at is not None
    page.screenshot(path=ARTIFACTS / "admin-key-reissued.png", full_page=True)

    # Shown once: the agent page lists the new key's prefix, never the key.
    page.get_by_role("link", name="Back to the agent").click()
    expect(page.locator("#api-keys")).to_contain_text(new_key[:12])
    assert new_key not in page.content()
    expect(page.locator("#key-events")).to_contain_text("owner lost the key")
