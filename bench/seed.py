"""Seed the benchmark database in bulk (PostgreSQL COPY): agents with ltx_ keys, and
users with DRF tokens for the comparison views.

    DJANGO_SETTINGS_MODULE=bench.settings python -m bench.seed --agents 1000 --users 1000 \
        --keys-out agents.txt --tokens-out tokens.txt

Agents are added to those already there (so 1,000 can grow to 1,000,000); a sample
of the keys of all of them is written out, spread over the whole table.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import uuid

import django

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from accounts.models import Agent  # noqa: E402
from keys import crypto  # noqa: E402
from keys.models import ApiKey  # noqa: E402

# Bench data only: a seeded non-cryptographic generator, ~20x faster than secrets.
_random = random.Random()  # noqa: S311


def bench_key() -> str:
    random_part = "".join(_random.choices(crypto.ALPHABET, k=crypto.RANDOM_LENGTH))
    return f"{crypto.KEY_PREFIX}{random_part}{crypto._checksum(random_part)}"


def seed_agents(count: int, sample: int) -> list[str]:
    """Add ``count`` agents with one key each; return ``sample`` of the new keys."""
    now = timezone.now()
    start = Agent.objects.count()
    keep = set(_random.sample(range(count), min(sample, count)))
    sampled: list[str] = []
    agent_ids = []
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's cursor: COPY
        agent_table = connection.ops.quote_name(Agent._meta.db_table)
        with raw.copy(
            f"COPY {agent_table} (id, agent_name, owner_identifier, tier, calls_total, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(count):
                agent_id = uuid.uuid4()
                agent_ids.append(agent_id)
                copy.write_row(
                    (agent_id, f"bench-{start + n}", "bench@example.com", "free", 0, now, now)
                )
        key_table = connection.ops.quote_name(ApiKey._meta.db_table)
        with raw.copy(
            f"COPY {key_table} (agent_id, prefix, hashed_key, created_at) FROM STDIN"
        ) as copy:
            for n, agent_id in enumerate(agent_ids):
                key = bench_key()
                if n in keep:
                    sampled.append(key)
                copy.write_row(
                    (
                        agent_id,
                        key[: crypto.DISPLAY_PREFIX_LENGTH],
                        hashlib.sha256(key.encode()).hexdigest(),
                        now,
                    )
                )
        # Settle the bulk load before measuring: hint bits, visibility map, statistics
        # (otherwise the first reads and autovacuum do it during the run).
        cursor.execute(f"VACUUM (FREEZE, ANALYZE) {agent_table}")
        cursor.execute(f"VACUUM (FREEZE, ANALYZE) {key_table}")
        # Write the bulk load's dirty pages out now, not during the measurement (a
        # checkpoint then slows every commit). Needs superuser or pg_checkpoint.
        try:
            with transaction.atomic():
                cursor.execute("CHECKPOINT")
        except DatabaseError:
            print("bench.seed: no CHECKPOINT privilege; measuring may overlap one")
    assert crypto.hash_key(sampled[0]) == hashlib.sha256(sampled[0].encode()).hexdigest()
    return sampled


def seed_users(count: int) -> list[str]:
    unusable = make_password(None)
    users = User.objects.bulk_create(
        [User(username=f"bench-{uuid.uuid4().hex[:12]}", password=unusable) for _ in range(count)]
    )
    tokens = Token.objects.bulk_create(
        [Token(key=Token.generate_key(), user=user) for user in users]
    )
    return [token.key for token in tokens]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=0)
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--keys-out")
    parser.add_argument("--tokens-out")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("bench/seed.py needs PostgreSQL (DATABASE_URL=postgres://...)")
    if args.agents:
        keys = seed_agents(args.agents, args.sample)
        with open(args.keys_out, "w") as out:
            out.write("\n".join(keys) + "\n")
    if args.users:
        tokens = seed_users(args.users)
        with open(args.tokens_out, "w") as out:
            out.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    main()
