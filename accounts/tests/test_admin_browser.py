"""End to end, in Debian's Chromium: a support user reads the console (screenshots of
the index, the over-limit list and an agent page go to artifacts/), and a staff
member finds an over-limit agent and reissues its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Agent, AgentEvent, Tier
from accounts.services import agent_register, agent_set_tier
from accounts.tests.conftest import set_calls
from billing.metering.services import meter_call
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey

# Servers or Python in subprocesses, or a browser: seconds each, not milliseconds.
pytestmark = pytest.mark.slow

ARTIFACTS = Path(settings.BASE_DIR) / "artifacts"


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


@pytest.mark.django_db(transaction=True)
def test_support_user_reads_the_console_at_a_glance(live_server, page: Page, support_user):
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1440, "height": 900})
    limit = settings.LITHTRIX_FREE_CALL_LIMIT
    greedy = agent_register(agent_name="greedy-bot", owner_identifier="greedy@example.com")
    set_calls(greedy.agent, limit - 3)
    for _ in range(3 + 17):  # the last 3 calls under the cap, then 17 refused (402)
        meter_call(agent_id=greedy.agent.pk)
    close = agent_register(agent_name="close-bot", owner_identifier="close@example.com")
    set_calls(close.agent, int(0.85 * limit))
    agent_register(agent_name="calm-bot", owner_identifier="calm@example.com")
    payer = agent_register(agent_name="paying-bot", owner_identifier="pay@example.com")
    agent_set_tier(agent=payer.agent, tier=Tier.PRO, reason="partner programme")
    AgentEvent.objects.create(
        agent=greedy.agent, kind=AgentEvent.Kind.PAYMENT_FAILED, data={"event_id": "evt_1Qx"}
    )
    ARTIFACTS.mkdir(exist_ok=True)

    log_in(page, live_server.url, support_user.username, "support-pass")
    expect(page).to_have_title("Overview | Lithtrix support")
    expect(page.locator("#site-name")).to_have_text("Lithtrix support")
    expect(page.locator("#summary-over-limit")).to_have_text("1")
    expect(page.locator("#summary-refused-today")).to_have_text("17")
    expect(page.get_by_role("link", name="View site")).to_have_attribute("href", "/v1/docs")
    page.screenshot(path=ARTIFACTS / "admin-index.png", full_page=True)

    page.locator("#summary-over-limit").locator("xpath=..").get_by_role("link").click()
    expect(page.locator("h1")).to_have_text("Agents")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".cap-badge.cap-at")).to_have_text("at cap")
    expect(rows.first.locator("td.field-refused_calls")).to_have_text("17 / 17")
    expect(page.locator("#result_list thead")).to_contain_text("Refused today / total")
    page.screenshot(path=ARTIFACTS / "admin-over-limit.png", full_page=True)

    page.goto(f"{live_server.url}/admin/accounts/agent/")
    near = page.locator("#result_list tbody tr", has_text="close-bot")
    expect(near.locator(".cap-badge.cap-near")).to_have_text("near cap")
    page.screenshot(path=ARTIFACTS / "admin-agents.png", full_page=True)

    page.locator("#result_list tbody tr", has_text="greedy-bot").get_by_role(
        "link", name="greedy-bot"
    ).click()
    expect(page.locator("h1")).to_have_text("Agent greedy-bot")
    expect(page.locator(".field-over_limit .cap-badge")).to_have_text("at cap")
    expect(page.locator("#daily-usage h2")).to_contain_text("17 refused at the cap (402)")
    expect(page.locator("#agent-events")).to_contain_text("Stripe, event evt_1Qx")
    expect(page.locator("#agent-events")).to_contain_text("the agent")
    expect(page.get_by_role("link", name="Reissue key")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "admin-agent.png", full_page=True)


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

    log_in(page, live_server.url, "staff", "correct-horse-42")
    expect(page.locator("#summary-over-limit")).to_have_text("1")

    page.goto(f"{live_server.url}/admin/accounts/agent/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.locator('details[data-filter-title="over limit"] a', has_text="Yes").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("greedy-bot")
    expect(rows.first.locator(".cap-badge.cap-at")).to_have_text("at cap")
    ARTIFACTS.mkdir(exist_ok=True)

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
