"""Time the staff admin's pages on the database in DATABASE_URL (seeded at scale).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix_admin DJANGO_DEBUG=on
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py seed_agents 1000000      # once, about 75 s
    .venv/bin/python bench/admin_at_scale.py --repeat 5 [--explain]

Each page is fetched through Django's test client, logged in as a superuser (the
whole request: middleware, admin, queries, template), once to warm up, then
``--repeat`` times. Prints the median and worst time and the number of SQL queries;
``--explain`` prints the plan (EXPLAIN ANALYZE) of each page's main queries.

Measured on PostgreSQL 15, 1,000,000 agents (2 vCPUs, shared with other work),
``--repeat 5``, median / worst ms: index 114/121; changelist 44/52; over-limit
filter 58/128; search by name 25/30, by owner 70/73, by key prefix 13/18, by agent
id 17/26; agent page 44/49. 4 queries per list page (8 on the agent page), whatever
the page size or table size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lithtrix.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accounts.admin import AgentAdmin  # noqa: E402
from accounts.models import Agent  # noqa: E402
from billing.metering.tiers import over_limit_condition  # noqa: E402
from keys.models import ApiKey  # noqa: E402

AGENTS = "/admin/accounts/agent/"
# Queries every admin page makes (session, user); not worth explaining.
BOILERPLATE = ("django_session", "auth_user")


def pages() -> list[tuple[str, str]]:
    # ?o= takes the column's position; a superuser's list starts with the action checkbox.
    usage = ["action_checkbox", *AgentAdmin.list_display].index("calls_total")
    sample = Agent.objects.filter(over_limit_condition()).order_by("created_at").first()
    if sample is None:
        sys.exit("No over-limit agent: run `manage.py seed_agents 1000000` first.")
    prefix = ApiKey.objects.filter(agent=sample).values_list("prefix", flat=True).first()
    return [
        ("admin index (usage summary)", "/admin/"),
        ("agent changelist", AGENTS),
        ("changelist, page 100", f"{AGENTS}?p=100"),
        ("changelist by usage, desc", f"{AGENTS}?o=-{usage}"),
        ("changelist by usage, asc", f"{AGENTS}?o={usage}"),
        ("changelist, last linked page", f"{AGENTS}?p=200"),
        ("page 20000: past the cap, redirect", f"{AGENTS}?p=20000"),
        ("tier free by usage, asc", f"{AGENTS}?tier__exact=free&o={usage}"),
        ("filter: over limit", f"{AGENTS}?over_limit=yes"),
        ("filter: over limit, by usage", f"{AGENTS}?over_limit=yes&o=-{usage}"),
        ("filter: over limit, by usage asc", f"{AGENTS}?over_limit=yes&o={usage}"),
        ("filter: not over limit", f"{AGENTS}?over_limit=no"),
        ("filter: tier pro", f"{AGENTS}?tier__exact=pro"),
        ("search: agent name", f"{AGENTS}?q={sample.agent_name}"),
        ("search: name start, many hits", f"{AGENTS}?q=seed-"),
        ("search: owner", f"{AGENTS}?q={sample.owner_identifier}"),
        ("search: key prefix", f"{AGENTS}?q={prefix}"),
        ("search: agent id", f"{AGENTS}?q={sample.pk}"),
        ("agent page", f"{AGENTS}{sample.pk}/change/"),
        ("API keys changelist", "/admin/keys/apikey/"),
        ("daily usage changelist", "/admin/billing/dailyusage/"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    agents = Agent.objects.count()
    print(f"{connection.vendor}, {agents:,} agents, {args.repeat} runs per page\n")
    print(f"{'page':34} {'median ms':>9} {'max ms':>7} {'queries':>7}  status")
    urls = pages()
    for name, url in urls:
        client.get(url)  # warm up caches and connections
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
        print(
            f"{name:34} {statistics.median(times):9.1f} {max(times):7.1f} "
            f"{len(queries):7d}  {response.status_code}"
        )
        if args.explain:
            explain(queries)
    print(f"\n{'':34} url")
    for name, url in urls:
        print(f"{name:34} {url}")


def explain(queries: CaptureQueriesContext) -> None:
    if connection.vendor != "postgresql":
        return
    for query in queries.captured_queries:
        sql = query["sql"]
        if any(table in sql for table in BOILERPLATE) or not sql.startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}")
            plan = [row[0] for row in cursor.fetchall()]
        print(f"    {sql[:160]}{'…' if len(sql) > 160 else ''}")
        for line in plan:
            print(f"      {line}")


if __name__ == "__main__":
    main()
