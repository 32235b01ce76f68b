"""Bulk-insert N fake agents, each with one key, and some daily usage (for the admin at scale).

PostgreSQL: INSERT ... SELECT generate_series in batches (1,000,000 agents in about a
minute). Other databases: bulk_create in batches. Fake agents are named
``seed-<run>-<n>`` and owned by ``owner<k>@seed.example.com``; their keys are random
hashes, usable by nobody.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Agent, Tier
from billing.models import DailyUsage
from keys.models import ApiKey

# Fake data, not secrets: a plain PRNG is what is wanted.
rng = random.Random()  # noqa: S311
OWNERS = 20_000  # distinct owners the fake agents share
USAGE_DAYS = 30

# One batch of agents, their keys and their daily usage, in one statement. Shape:
# 5% Pro; 40% never called; others up to 3x the free limit (so about a fifth of
# the free agents are over it); created over the last two years; every tenth
# agent that called has usage rows on about a third of the last 30 days.
PG_BATCH = """
WITH numbered AS (
    SELECT i,
           CASE WHEN random() < 0.4 THEN 0
                ELSE floor(random() * random() * %(limit)s * 3)::bigint END AS calls,
           now() - random() * interval '730 days' AS created
    FROM generate_series(%(first)s, %(last)s) AS i
), agents AS (
    INSERT INTO accounts_agent (id, agent_name, owner_identifier, tier, calls_total,
                                last_call_at, created_at, updated_at)
    SELECT gen_random_uuid(), 'seed-' || %(run)s || '-' || i,
           'owner' || (i %% %(owners)s) || '@seed.example.com',
           CASE WHEN i %% 20 = 0 THEN 'pro' ELSE 'free' END,
           calls,
           CASE WHEN calls > 0 THEN now() - random() * interval '30 days' END,
           created, created
    FROM numbered
    RETURNING id, calls_total, created_at
), api_keys AS (
    INSERT INTO keys_apikey (agent_id, prefix, hashed_key, created_at)
    SELECT id, 'ltx_' || substr(md5(random()::text), 1, 8),
           encode(sha256(convert_to(id::text || random()::text, 'UTF8')), 'hex'),
           created_at
    FROM agents
    RETURNING 1
)
INSERT INTO billing_dailyusage (agent_id, date, calls)
SELECT id, current_date - day, 1 + floor(random() * calls_total / 10)::bigint
FROM agents, generate_series(0, %(days)s - 1) AS day
WHERE calls_total > 0 AND random() < 0.1 * 0.3
"""


class Command(BaseCommand):
    help = "Bulk-insert N fake agents (with one key each and some daily usage)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", type=int, help="number of agents to insert")
        parser.add_argument("--batch-size", type=int, default=100_000)

    def handle(self, *args, count: int, batch_size: int, **options) -> None:
        run = secrets.token_hex(3)
        started = time.monotonic()
        for first in range(1, count + 1, batch_size):
            last = min(first + batch_size - 1, count)
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    self._insert_postgresql(run, first, last)
                else:
                    self._insert_portable(run, first, last)
            self.stdout.write(f"{last} agents ({time.monotonic() - started:.1f}s)")
        if connection.vendor == "postgresql":
            # Fresh statistics: the planner's choices and the admin's row estimate.
            with connection.cursor() as cursor:
                for table in ("accounts_agent", "keys_apikey", "billing_dailyusage"):
                    cursor.execute(f"ANALYZE {table}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Inserted {count} agents (run {run}) in {time.monotonic() - started:.1f}s"
            )
        )

    def _insert_postgresql(self, run: str, first: int, last: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                PG_BATCH,
                {
                    "run": run,
                    "first": first,
                    "last": last,
                    "owners": OWNERS,
                    "limit": settings.LITHTRIX_FREE_CALL_LIMIT,
                    "days": USAGE_DAYS,
                },
            )

    def _insert_portable(self, run: str, first: int, last: int) -> None:
        now = timezone.now()
        today = now.date()
        limit = settings.LITHTRIX_FREE_CALL_LIMIT
        agents: list[tuple[Agent, datetime]] = []
        api_keys: list[ApiKey] = []
        usage: list[DailyUsage] = []
        for i in range(first, last + 1):
            calls = 0 if rng.random() < 0.4 else int(rng.random() * rng.random() * limit * 3)
            created = now - timedelta(days=730 * rng.random())
            agent = Agent(
                id=uuid.uuid4(),
                agent_name=f"seed-{run}-{i}",
                owner_identifier=f"owner{i % OWNERS}@seed.example.com",
                tier=Tier.PRO if i % 20 == 0 else Tier.FREE,
                calls_total=calls,
                last_call_at=now - timedelta(days=30 * rng.random()) if calls else None,
            )
            agents.append((agent, created))
            api_keys.append(
                ApiKey(
                    agent=agent,
                    prefix="ltx_" + secrets.token_hex(4),
                    hashed_key=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
                )
            )
            if calls and rng.random() < 0.1:
                usage.extend(
                    DailyUsage(
                        agent=agent,
                        date=today - timedelta(days=day),
                        calls=1 + int(rng.random() * calls / 10),
                    )
                    for day in range(USAGE_DAYS)
                    if rng.random() < 0.3
                )
        Agent.objects.bulk_create([agent for agent, _ in agents], batch_size=2_000)
        # created_at is auto_now_add: spread it afterwards, per agent, as PostgreSQL does.
        for agent, created in agents:
            agent.created_at = created
        Agent.objects.bulk_update([agent for agent, _ in agents], ["created_at"], batch_size=2_000)
        ApiKey.objects.bulk_create(api_keys, batch_size=2_000)
        DailyUsage.objects.bulk_create(usage, batch_size=2_000)
