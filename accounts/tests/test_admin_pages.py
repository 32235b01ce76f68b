"""The staff admin's pages: what they show, how they filter and search, how many queries."""

from __future__ import annotations

import datetime as dt
import math
import re
from unittest import mock

import pytest
from django.db import connection

from accounts.models import Agent, Tier
from accounts.services import agent_set_tier
from accounts.tests.conftest import AGENTS_URL, agent_url, set_calls
from billing.metering.selectors import utc_today
from billing.metering.services import meter_call
from billing.models import DailyUsage
from keys.models import ApiKey
from keys.services import api_key_reissue
from lithtrix.core.paginators import LargeTablePaginator


def listed_names(response) -> list[str]:
    """Agent names in the changelist's rows, in order."""
    return [agent.agent_name for agent in response.context["cl"].result_list]


@pytest.mark.django_db
def test_changelist_shows_usage_columns_and_cap_badges(admin_client, make_agent, settings):
    limit = settings.LITHTRIX_FREE_CALL_LIMIT
    calm = make_agent(name="calm-bot").agent
    greedy = set_calls(make_agent(name="greedy-bot").agent, limit)
    close = set_calls(make_agent(name="close-bot").agent, math.ceil(0.8 * limit))
    set_calls(make_agent(name="below-bot").agent, math.ceil(0.8 * limit) - 1)
    pro = set_calls(make_agent(name="pro-bot").agent, 10_000)
    agent_set_tier(agent=pro, tier=Tier.PRO)

    response = admin_client.get(AGENTS_URL)

    assert response.status_code == 200
    html = response.content.decode()
    for header in (
        "Agent name",
        "Owner identifier",
        "Tier",
        "Calls total",
        "Limit",
        "Cap",
        "Refused today / total",
        "Last metered call",
        "Registered",
    ):
        assert f">{header}<" in html or f">{header}</a>" in html, header
    rows = {a.agent_name: a for a in response.context["cl"].result_list}
    assert set(rows) == {"calm-bot", "greedy-bot", "close-bot", "below-bot", "pro-bot"}
    assert rows["greedy-bot"].is_over_limit is True
    assert rows["calm-bot"].is_over_limit is False
    assert rows["pro-bot"].is_over_limit is False  # Pro has no cap
    # A text badge with its color, not Django's boolean icon: one at the cap, one
    # from 80 % of it; under 80 % and Pro get none.
    assert "icon-yes.svg" not in html and "icon-no.svg" not in html
    assert re.findall(r'class="cap-badge (cap-\w+)"[^>]*>([^<]+)<', html) == [
        ("cap-near", "near cap"),
        ("cap-at", "at cap"),
    ]  # newest first: close-bot was registered after greedy-bot
    assert f"{limit:,} of {limit:,} calls" in html
    assert f"{limit:,}" in html
    assert "unlimited" in html
    assert calm.pk and greedy.pk and close.pk


@pytest.mark.django_db
def test_changelist_counts_refused_calls_today_and_in_all(admin_client, make_agent, settings):
    settings.LITHTRIX_FREE_CALL_LIMIT = 2
    hammering = make_agent(name="hammering").agent
    quiet = make_agent(name="quiet").agent
    for _ in range(5):
        meter_call(agent_id=hammering.pk)  # 2 allowed, 3 refused (402)
    DailyUsage.objects.create(agent=hammering, date=utc_today() - dt.timedelta(days=3), refused=4)

    response = admin_client.get(AGENTS_URL)

    rows = {a.agent_name: a for a in response.context["cl"].result_list}
    assert (rows["hammering"].refused_today, rows["hammering"].refused_total) == (3, 7)
    assert (rows["quiet"].refused_today, rows["quiet"].refused_total) == (0, 0)
    assert re.search(
        r'<span class="refused refused-today"[^>]*>3 / 7</span>', response.content.decode()
    )
    assert DailyUsage.objects.get(agent=hammering, date=utc_today()).calls == 2
    assert quiet.pk


@pytest.mark.django_db
def test_over_limit_filter_is_one_sql_condition(admin_client, make_agent, settings):
    limit = settings.LITHTRIX_FREE_CALL_LIMIT
    set_calls(make_agent(name="at-limit").agent, limit)
    set_calls(make_agent(name="below-limit").agent, limit - 1)
    pro = set_calls(make_agent(name="pro-above").agent, limit * 5)
    agent_set_tier(agent=pro, tier=Tier.PRO)

    over = admin_client.get(AGENTS_URL, {"over_limit": "yes"})
    under = admin_client.get(AGENTS_URL, {"over_limit": "no"})

    assert listed_names(over) == ["at-limit"]
    assert sorted(listed_names(under)) == ["below-limit", "pro-above"]
    sql = str(over.context["cl"].queryset.query)
    assert re.search(rf'"calls_total" >= {limit} AND "accounts_agent"\."tier" = \'?free', sql)


@pytest.mark.django_db
def test_tier_filter(admin_client, make_agent):
    agent_set_tier(agent=make_agent(name="paying").agent, tier=Tier.PRO)
    make_agent(name="free-rider")

    response = admin_client.get(AGENTS_URL, {"tier__exact": "pro"})

    assert listed_names(response) == ["paying"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("alpha", ["alpha-bot"]),
        ("ALPHA-B", ["alpha-bot"]),
        ("ops@", ["beta-bot"]),
        ("bot", []),  # names and owners match from their start
    ],
    ids=["name-start", "name-case-insensitive", "owner-start", "no-substring"],
)
def test_search_by_name_or_owner(admin_client, make_agent, term, expected):
    make_agent(name="alpha-bot", owner="alice@example.com")
    make_agent(name="beta-bot", owner="ops@example.com")

    response = admin_client.get(AGENTS_URL, {"q": term})

    assert listed_names(response) == expected


@pytest.mark.django_db
def test_search_by_exact_agent_id(admin_client, make_agent):
    wanted = make_agent(name="wanted").agent
    make_agent(name="other")

    assert listed_names(admin_client.get(AGENTS_URL, {"q": str(wanted.pk)})) == ["wanted"]
    assert listed_names(admin_client.get(AGENTS_URL, {"q": f"  {str(wanted.pk).upper()} "})) == [
        "wanted"
    ]


@pytest.mark.django_db
def test_search_by_key_prefix_finds_the_agent_once(admin_client, make_agent, admin_user):
    registered = make_agent(name="keyed")
    make_agent(name="unrelated")
    old_prefix = registered.api_key[:12]
    # A second key: the agent must still be listed once, by its old or its new prefix.
    new_key = api_key_reissue(agent=registered.agent, actor=admin_user)
    assert new_key is not None

    by_old = admin_client.get(AGENTS_URL, {"q": old_prefix})
    by_new = admin_client.get(AGENTS_URL, {"q": new_key[:12]})
    by_whole_key = admin_client.get(AGENTS_URL, {"q": new_key})

    assert listed_names(by_old) == ["keyed"]
    assert listed_names(by_new) == ["keyed"]
    assert listed_names(by_whole_key) == ["keyed"]
    assert listed_names(admin_client.get(AGENTS_URL, {"q": "ltx_00000000"})) == []


@pytest.mark.django_db
def test_sort_by_usage_both_ways(admin_client, make_agent):
    for name, calls in [("low", 1), ("high", 50), ("mid", 10)]:
        set_calls(make_agent(name=name).agent, calls)
    column = list(admin_client.get(AGENTS_URL).context["cl"].list_display).index("calls_total")

    descending = admin_client.get(AGENTS_URL, {"o": f"-{column}"})
    ascending = admin_client.get(AGENTS_URL, {"o": f"{column}"})

    assert listed_names(descending) == ["high", "mid", "low"]
    assert listed_names(ascending) == ["low", "mid", "high"]
    # Ties go the same way as the column, so one (calls_total, id) index serves the sort.
    assert ascending.context["cl"].get_ordering(None, Agent.objects.none())[-1] == "pk"


@pytest.mark.django_db
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, make_agent, django_assert_max_num_queries, settings
):
    for n in range(60):
        agent = make_agent(name=f"bulk-{n}").agent
        if n % 3 == 0:
            set_calls(agent, settings.LITHTRIX_FREE_CALL_LIMIT)

    # session + user + count + page (the unfiltered count is an estimate on PostgreSQL)
    for query in ({}, {"over_limit": "yes"}, {"q": "bulk-1"}, {"tier__exact": "free", "p": "2"}):
        with django_assert_max_num_queries(5):
            response = admin_client.get(AGENTS_URL, query)
        assert response.status_code == 200


@pytest.mark.django_db
def test_changelist_never_counts_the_whole_table(admin_client, make_agent):
    make_agent()
    response = admin_client.get(AGENTS_URL, {"over_limit": "yes"})

    assert response.context["cl"].show_full_result_count is False
    assert response.context["cl"].full_result_count is None


@pytest.mark.django_db
def test_filtered_count_stops_at_the_cap(admin_client, make_agent, monkeypatch):
    monkeypatch.setattr(LargeTablePaginator, "COUNT_CAP", 2)
    for n in range(4):
        make_agent(name=f"capped-{n}")

    response = admin_client.get(AGENTS_URL, {"q": "capped"})

    assert response.context["cl"].result_count == 2
    assert re.search(r"more than 2\s+agents", response.content.decode())


@pytest.mark.requires_postgres
@pytest.mark.django_db
def test_unfiltered_count_is_the_planner_estimate_on_postgresql(
    admin_client, make_agent, monkeypatch
):
    monkeypatch.setattr(LargeTablePaginator, "ESTIMATE_ABOVE", 0)
    for _ in range(3):
        make_agent()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_agent")

    response = admin_client.get(AGENTS_URL)

    assert response.context["cl"].paginator.count_is_estimate is True
    assert re.search(r"about 3\s+agents", response.content.decode())


@pytest.mark.django_db
def test_agent_page_shows_profile_usage_keys_and_audit_trails(
    admin_client, make_agent, admin_user, django_assert_max_num_queries
):
    registered = make_agent(name="detailed", owner="d@example.com")
    agent = registered.agent
    today = utc_today()
    DailyUsage.objects.create(agent=agent, date=today, calls=7)
    DailyUsage.objects.create(agent=agent, date=today - dt.timedelta(days=29), calls=3)
    DailyUsage.objects.create(agent=agent, date=today - dt.timedelta(days=30), calls=99)
    api_key_reissue(agent=agent, actor=admin_user, reason="lost it")
    agent_set_tier(agent=agent, tier=Tier.PRO, actor=admin_user, reason="partner")

    with django_assert_max_num_queries(10):
        response = admin_client.get(agent_url(agent))

    assert response.status_code == 200
    html = response.content.decode()
    assert str(agent.pk) in html and "d@example.com" in html
    usage = response.context["daily_usage"]
    assert len(usage) == 30
    assert (usage[-1].date, usage[-1].calls, usage[-1].percent) == (today, 7, 100)
    assert (usage[0].date, usage[0].calls) == (today - dt.timedelta(days=29), 3)
    assert sum(day.calls for day in usage) == 10  # the 31st day back is outside
    keys = ApiKey.objects.filter(agent=agent)
    assert [k.prefix for k in response.context["api_keys"]] == [k.prefix for k in keys]
    for key in keys:
        assert f"{key.prefix}…" in html
        assert key.hashed_key not in html
    assert registered.api_key not in html
    assert [e.kind for e in response.context["key_events"]] == ["issued", "revoked", "issued"]
    assert "lost it" in html and "admin" in html
    assert [e.kind for e in response.context["agent_events"]] == ["tier_changed", "registered"]
    assert "partner" in html
    assert "no Stripe customer" in html


@pytest.mark.django_db
def test_agent_page_of_unknown_agent_redirects_to_the_list(admin_client):
    response = admin_client.get(f"{AGENTS_URL}00000000-0000-0000-0000-000000000000/change/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.django_db
def test_stripe_links_point_at_dj_stripe_changelists_when_installed(admin_client, make_agent):
    agent = make_agent().agent
    Agent.objects.filter(pk=agent.pk).update(stripe_customer_id="cus_Test123")
    names = {
        "admin:djstripe_customer_changelist": "/admin/djstripe/customer/",
        "admin:djstripe_subscription_changelist": "/admin/djstripe/subscription/",
        "admin:djstripe_paymentmethod_changelist": "/admin/djstripe/paymentmethod/",
    }
    from accounts.admin import agents as agent_admin

    real_reverse = agent_admin.reverse
    with (
        mock.patch.object(agent_admin.apps, "is_installed", side_effect=lambda app: True),
        mock.patch.object(
            agent_admin,
            "reverse",
            side_effect=lambda name, *a, **k: names.get(name) or real_reverse(name, *a, **k),
        ),
    ):
        response = admin_client.get(agent_url(agent))

    html = response.content.decode()
    assert '<a href="/admin/djstripe/customer/?id=cus_Test123">Customer</a>' in html
    assert (
        '<a href="/admin/djstripe/subscription/?customer__id=cus_Test123">Subscriptions</a>' in html
    )
    assert (
        '<a href="/admin/djstripe/paymentmethod/?customer__id=cus_Test123">Payment methods</a>'
        in html
    )


@pytest.mark.django_db
def test_stripe_links_say_when_dj_stripe_is_missing(admin_client, make_agent):
    agent = make_agent().agent
    Agent.objects.filter(pk=agent.pk).update(stripe_customer_id="cus_Test123")
    from accounts.admin import agents as agent_admin

    with mock.patch.object(agent_admin.apps, "is_installed", side_effect=lambda app: False):
        response = admin_client.get(agent_url(agent))

    assert "dj-stripe is not installed" in response.content.decode()
    assert "cus_Test123" in response.content.decode()


@pytest.mark.django_db
def test_index_shows_usage_summary(
    admin_client, make_agent, settings, django_assert_max_num_queries
):
    today = utc_today()
    greedy = set_calls(make_agent(name="greedy").agent, settings.LITHTRIX_FREE_CALL_LIMIT)
    agent_set_tier(agent=make_agent(name="payer").agent, tier=Tier.PRO)
    old = make_agent(name="old-timer").agent
    Agent.objects.filter(pk=old.pk).update(created_at=old.created_at - dt.timedelta(days=8))
    DailyUsage.objects.create(agent=greedy, date=today, calls=5)
    DailyUsage.objects.create(agent=greedy, date=today - dt.timedelta(days=6), calls=20)
    DailyUsage.objects.create(agent=old, date=today - dt.timedelta(days=7), calls=400)

    with django_assert_max_num_queries(10):
        response = admin_client.get("/admin/")

    assert response.status_code == 200
    html = response.content.decode()
    summary = response.context["summary"]
    assert summary.agents_by_tier == {"free": 2, "pro": 1}
    assert (summary.over_limit, summary.calls_today, summary.calls_last_7_days) == (1, 5, 25)
    assert summary.registrations_last_7_days == 2
    assert re.search(r'id="summary-over-limit">1<', html)
    assert re.search(r'id="summary-calls-week">25<', html)
    assert 'href="/admin/accounts/agent/?over_limit=yes"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/admin/keys/apikey/",
        "/admin/keys/keyevent/",
        "/admin/accounts/agentevent/",
        "/admin/billing/dailyusage/",
    ],
)
def test_audit_and_usage_lists_are_read_only_and_never_show_hashes(
    admin_client, make_agent, url, django_assert_max_num_queries
):
    registered = make_agent()
    DailyUsage.objects.create(agent=registered.agent, date=utc_today(), calls=1)
    stored = ApiKey.objects.get(agent=registered.agent)

    with django_assert_max_num_queries(6):
        listing = admin_client.get(url)
    row = listing.context["cl"].result_list[0]
    detail = admin_client.get(f"{url}{row.pk}/change/")
    by_agent = admin_client.get(url, {"q": str(registered.agent.pk)})

    for response in (listing, detail, by_agent):
        assert response.status_code == 200
        html = response.content.decode()
        assert stored.hashed_key not in html
        assert registered.api_key not in html
    assert len(by_agent.context["cl"].result_list) == 1
    assert admin_client.get(f"{url}add/").status_code == 403
    assert 'name="_save"' not in detail.content.decode()


@pytest.mark.django_db
def test_filter_facet_counts_are_off(admin_client, make_agent):
    make_agent()

    response = admin_client.get(AGENTS_URL, {"_facets": "True"})

    assert response.status_code == 200
    assert "Show counts" not in response.content.decode()
    assert response.context["cl"].add_facets is False


@pytest.mark.django_db
def test_pages_stop_at_the_count_cap(admin_client, make_agent, monkeypatch):
    from accounts.admin import AgentAdmin

    monkeypatch.setattr(LargeTablePaginator, "COUNT_CAP", 2)
    monkeypatch.setattr(AgentAdmin, "list_per_page", 1)
    for n in range(4):
        make_agent(name=f"paged-{n}")

    second = admin_client.get(AGENTS_URL, {"p": "2"})
    third = admin_client.get(AGENTS_URL, {"p": "3"})

    assert second.status_code == 200 and len(second.context["cl"].result_list) == 1
    assert second.context["cl"].paginator.num_pages == 2
    assert third.status_code == 302 and third["Location"].endswith("?e=1")


@pytest.mark.django_db
def test_columns_outside_sortable_by_cannot_be_ordered_by_url(admin_client, make_agent):
    make_agent()
    columns = list(admin_client.get(AGENTS_URL).context["cl"].list_display)

    response = admin_client.get(AGENTS_URL, {"o": str(columns.index("last_metered_call"))})

    # Falls back to the default, indexed ordering instead of sorting by last_call_at.
    assert response.context["cl"].get_ordering(None, Agent.objects.none()) == [
        "-created_at",
        "-pk",
    ]
