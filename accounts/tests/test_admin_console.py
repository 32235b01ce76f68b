"""The console as a whole: branding, index order, plain titles, the Stripe mirror reduced
to what support reads, and audit rows that name who acted."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin

from accounts.models import AgentEvent, Tier
from accounts.services import agent_delete, agent_set_tier
from accounts.tests.conftest import AGENTS_URL, agent_url, set_calls
from keys.models import ApiKey

STRIPE_PAGES = {"customer", "subscription", "invoice", "paymentmethod", "event"}


@pytest.mark.django_db
def test_console_is_branded_and_view_site_points_at_the_api_docs(support_client):
    html = support_client.get("/admin/").content.decode()

    assert "<title>Overview | Lithtrix support</title>" in html
    assert re.search(r'id="site-name"><a href="/admin/">Lithtrix support</a>', html)
    assert "Django administration" not in html and "Site administration" not in html
    assert '<a href="/v1/docs">View site</a>' in html


@pytest.mark.django_db
def test_index_leads_with_usage_then_agents_and_keys(support_client):
    response = support_client.get("/admin/")

    labels = [app["app_label"] for app in response.context["app_list"]]
    assert labels == ["accounts", "keys", "billing", "events", "mail", "djstripe"]
    html = response.content.decode()
    assert html.index('id="usage-summary"') < html.index('class="app-accounts')


@pytest.mark.django_db
def test_stripe_mirror_is_reduced_to_read_only_pages_support_uses(admin_client):
    registered = {
        m._meta.model_name for m in admin.site._registry if m._meta.app_label == "djstripe"
    }
    assert registered == STRIPE_PAGES

    for page in sorted(STRIPE_PAGES):
        listing = admin_client.get(f"/admin/djstripe/{page}/")  # a superuser, even
        assert listing.status_code == 200, page
        html = listing.content.decode()
        assert 'name="action"' not in html, page  # no action (each would call Stripe)
        assert f'href="/admin/djstripe/{page}/add/"' not in html, page
        assert admin_client.get(f"/admin/djstripe/{page}/add/").status_code == 403, page
    assert admin_client.get("/admin/djstripe/product/").status_code == 404
    assert admin_client.get("/admin/djstripe/apikey/").status_code == 404


@pytest.mark.django_db
def test_support_reads_the_stripe_mirror(support_client):
    for page in sorted(STRIPE_PAGES):
        assert support_client.get(f"/admin/djstripe/{page}/").status_code == 200, page


@pytest.mark.django_db
def test_titles_and_breadcrumbs_are_plain(support_client, registered):
    listing = support_client.get(AGENTS_URL).content.decode()
    page = support_client.get(agent_url(registered.agent)).content.decode()

    assert "<title>Agents | Lithtrix support</title>" in listing
    assert "<h1>Agents</h1>" in listing and "Select agent" not in listing
    assert re.search(
        r'breadcrumbs">\s*<a href="/admin/">Home</a>\s*&rsaquo; Agents\s*</div>', listing
    )
    assert "<title>Agent my-agent | Lithtrix support</title>" in page
    assert "<h1>Agent my-agent</h1>" in page and "View agent" not in page
    assert re.search(
        r'<a href="/admin/">Home</a>\s*&rsaquo; <a href="/admin/accounts/agent/">Agents</a>'
        r"\s*&rsaquo; my-agent \(you@example.com\)\s*</div>",
        page,
    )


@pytest.mark.django_db
def test_audit_trail_names_who_acted(admin_client, admin_user, registered):
    agent = registered.agent
    agent_set_tier(agent=agent, tier=Tier.PRO, actor=admin_user, reason="partner")
    # As billing.payments.services records a Stripe webhook it applied.
    AgentEvent.objects.create(
        agent=agent, kind=AgentEvent.Kind.PAYMENT_FAILED, data={"event_id": "evt_1Abc"}
    )

    page = admin_client.get(agent_url(agent))
    listing = admin_client.get("/admin/accounts/agentevent/")

    by = {event.kind: event.by for event in page.context["agent_events"]}
    assert by == {
        "registered": "the agent",
        "tier_changed": "admin (staff)",
        "payment_failed": "Stripe, event evt_1Abc",
    }
    for html in (page.content.decode(), listing.content.decode()):
        for who in by.values():
            assert f">{who}<" in html, who
    assert "the agent or Stripe" not in page.content.decode()


# --- deleted agents and dates ---------------------------------------------------


@pytest.mark.django_db
def test_index_counts_deleted_agents_apart(admin_client, make_agent, settings):
    make_agent(name="alive")
    gone = set_calls(make_agent(name="gone").agent, settings.LITHTRIX_FREE_CALL_LIMIT)
    agent_delete(agent=gone)

    response = admin_client.get("/admin/")

    summary = response.context["summary"]
    assert summary.agents_by_tier == {"free": 1, "pro": 0}
    assert summary.registrations_last_7_days == 1
    assert summary.over_limit == 0
    assert summary.deleted == 1
    html = response.content.decode()
    assert re.search(r'id="summary-deleted">1<', html)
    assert 'href="/admin/accounts/agent/?deleted=yes"' in html
    # Each count leads to a list of exactly those agents.
    for link, count in [
        ("?tier__exact=free&amp;deleted=no", 1),
        ("?tier__exact=pro&amp;deleted=no", 0),
        ("?over_limit=yes", 0),
        ("?deleted=yes", 1),
    ]:
        assert f'href="/admin/accounts/agent/{link}"' in html
        listed = admin_client.get(f"/admin/accounts/agent/{link.replace('&amp;', '&')}")
        assert listed.context["cl"].result_count == count, link


@pytest.mark.django_db
def test_agent_list_shows_a_deleted_agent_short_and_filters_it(admin_client, make_agent):
    make_agent(name="alive")
    gone = make_agent(name="gone").agent
    agent_delete(agent=gone)
    tombstone = f"deleted-{gone.pk}"

    listing = admin_client.get(AGENTS_URL).content.decode()
    deleted_only = admin_client.get(AGENTS_URL, {"deleted": "yes"})
    live_only = admin_client.get(AGENTS_URL, {"deleted": "no"})

    short = f"deleted · {str(gone.pk)[:8]}…"
    assert listing.count(f'<span class="tombstone" title="{tombstone}">{short}</span>') == 2
    assert f">{tombstone}<" not in listing  # never the 44-character name as text
    assert [a.pk for a in deleted_only.context["cl"].result_list] == [gone.pk]
    assert [a.agent_name for a in live_only.context["cl"].result_list] == ["alive"]


UTC_TIME = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d UTC\b")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "page",
    ["agent list", "agent page", "key list", "key page", "key events", "agent events"],
)
def test_every_console_page_writes_times_one_way_in_utc(admin_client, make_agent, page):
    agent = make_agent(name="timed").agent
    key = ApiKey.objects.get(agent=agent)
    url = {
        "agent list": AGENTS_URL,
        "agent page": agent_url(agent),
        "key list": "/admin/keys/apikey/",
        "key page": f"/admin/keys/apikey/{key.pk}/change/",
        "key events": "/admin/keys/keyevent/",
        "agent events": "/admin/accounts/agentevent/",
    }[page]

    html = admin_client.get(url).content.decode()

    written = agent.created_at.strftime("%Y-%m-%d %H:")
    assert any(time.startswith(written) for time in UTC_TIME.findall(html)), html[-2000:]
    for other in ("a.m.", "p.m.", "midnight", "noon"):
        assert other not in html
