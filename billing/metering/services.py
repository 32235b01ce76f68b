"""Writes for metering: counting an agent's metered calls against its tier's cap."""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Agent, Tier
from billing.metering.tiers import tier_limits
from billing.models import DailyUsage
from events.models import Event
from events.services import event_dispatch_enqueue
from keys.models import ApiKey
from keys.selectors import working_key_sql
from lithtrix.core import db


@dataclass(frozen=True)
class MeterResult:
    allowed: bool
    # The agent's lifetime count after this call; None when the call was refused.
    calls_total: int | None
    # The usage.near_limit / usage.limit_reached event this call recorded, if any.
    event_id: str | None = None


def _sql_names() -> dict[str, str]:
    qn = connection.ops.quote_name
    return {
        "agent": qn(Agent._meta.db_table),
        "usage": qn(DailyUsage._meta.db_table),
        "key": qn(ApiKey._meta.db_table),
        "event": qn(Event._meta.db_table),
    }


# What both PostgreSQL metering statements do with the row their UPDATE (``metered``)
# returned: the daily row, and the usage event of a call that reaches a mark.
_METER_TAIL_POSTGRESQL = """\
), daily AS (
    INSERT INTO {usage} (agent_id, date, calls)
    SELECT id, %(today)s, 1 FROM metered
    ON CONFLICT (agent_id, date) DO UPDATE SET calls = {usage}.calls + 1
), crossed AS (
    INSERT INTO {event} (id, agent_id, type, data, created_at)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), id,
           CASE WHEN calls_total = %(free_limit)s THEN %(limit_reached)s ELSE %(near_limit)s END,
           jsonb_build_object('calls_total', calls_total, 'call_limit', %(free_limit)s),
           %(now)s
      FROM metered
     WHERE tier = %(free)s AND calls_total IN (%(near_mark)s, %(free_limit)s)
 RETURNING id
)
SELECT calls_total, (SELECT id FROM crossed) FROM metered
"""

# PostgreSQL: one statement. The UPDATE only matches while the call is allowed and
# takes the row lock, so concurrent calls at the cap queue behind each other and
# re-check the condition (READ COMMITTED re-evaluates WHERE on the new row version):
# a Free agent gets exactly call_limit calls. The daily row is upserted from the
# UPDATE's RETURNING, so a refused call writes nothing at all. The one call whose new
# calls_total is a Free agent's 80 % mark or its cap (each value is reached by exactly
# one call, under the row lock) also inserts its usage.near_limit or
# usage.limit_reached event, in the same statement and so the same commit.
_METER_SQL_POSTGRESQL = """
WITH metered AS (
    UPDATE {agent}
       SET calls_total = calls_total + 1, last_call_at = %(now)s
     WHERE id = %(agent_id)s AND (tier <> %(free)s OR calls_total < %(free_limit)s)
 RETURNING id, calls_total, tier
{tail}"""

# The same, for a caller that skipped the key lookup (a key hint, keys.hints): the
# UPDATE also requires the presented key to still authenticate (the lookup's own
# condition, keys.selectors.working_key_sql) and the agent to be on the tier the
# caller rate-limited it as. A call that does not match is not counted and changes
# nothing; the caller then decides 401, 402 or a tier change with the full lookup.
_METER_WITH_KEY_SQL_POSTGRESQL = """
WITH metered AS (
    UPDATE {agent} a
       SET calls_total = a.calls_total + 1, last_call_at = %(now)s
      FROM {key} k
     WHERE a.id = %(agent_id)s AND k.agent_id = a.id AND {working_key}
       AND a.tier = %(tier)s AND (a.tier <> %(free)s OR a.calls_total < %(free_limit)s)
 RETURNING a.id, a.calls_total, a.tier
{tail}"""

# SQLite has no data-modifying CTEs: the same statements run in one transaction.
# Transactions here BEGIN IMMEDIATE (settings), so the write lock is held from the
# first statement and concurrent callers are serialised by the database.
_METER_UPDATE_SQLITE = """
UPDATE {agent}
   SET calls_total = calls_total + 1, last_call_at = %(now)s
 WHERE id = %(agent_id)s AND (tier <> %(free)s OR calls_total < %(free_limit)s)
RETURNING calls_total, tier
"""
_DAILY_UPSERT_SQLITE = """
INSERT INTO {usage} (agent_id, date, calls) VALUES (%(agent_id)s, %(today)s, 1)
ON CONFLICT (agent_id, date) DO UPDATE SET calls = calls + 1
"""
_EVENT_INSERT_SQLITE = """
INSERT INTO {event} (id, agent_id, type, data, created_at)
VALUES ('evt_' || lower(hex(randomblob(16))), %(agent_id)s, %(event_type)s,
        json_object('calls_total', %(calls_total)s, 'call_limit', %(free_limit)s), %(now)s)
RETURNING id
"""

# A refused call (402 at the cap) is counted on the agent's day, for support to see,
# in one statement of its own that only runs when the call was refused. The SELECT
# (rather than VALUES) makes an unknown agent id write nothing instead of failing its
# foreign key (and gives SQLite the WHERE it needs to parse ON CONFLICT after a SELECT).
_REFUSED_UPSERT_SQL = """
INSERT INTO {usage} (agent_id, date, calls, refused)
SELECT id, %(today)s, 0, 1 FROM {agent} WHERE id = %(agent_id)s
ON CONFLICT (agent_id, date) DO UPDATE SET refused = {usage}.refused + 1
"""


@functools.cache
def _postgresql_sql(*, with_key: bool) -> str:
    names = _sql_names()
    tail = _METER_TAIL_POSTGRESQL.format(**names)
    if with_key:
        return _METER_WITH_KEY_SQL_POSTGRESQL.format(
            **names, tail=tail, working_key=working_key_sql("k", "a")
        )
    return _METER_SQL_POSTGRESQL.format(**names, tail=tail)


def meter_call(
    *, agent_id: uuid.UUID, hashed_key: str | None = None, tier: str | None = None
) -> MeterResult:
    """Count one metered call for the agent if its tier allows it.

    Guarantees, on PostgreSQL and SQLite alike: a Free agent's calls_total is
    incremented only while it is below the Free call limit (never past it, under
    any concurrency); Pro agents are counted without a cap; the agent's
    last_call_at and its DailyUsage row for today (UTC) change in the same
    transaction as the counter. A refused call changes no counter; it adds one to
    the day's ``refused`` count only.

    With ``hashed_key`` and ``tier`` (PostgreSQL only; a caller that did not look
    the key up): the call is counted only if, in the same statement, that key
    still authenticates as this agent and the agent is on ``tier``. Not allowed
    then means "not counted", for one of those reasons or the cap, and nothing is
    written, ``refused`` included: the caller decides with the full lookup and
    meters again without a hint, which counts the refusal once.
    """
    now = timezone.now()
    free_limit = tier_limits(Tier.FREE).call_limit
    assert free_limit is not None  # Free always has a cap
    params = {
        "agent_id": Agent._meta.pk.get_db_prep_value(agent_id, connection),
        "now": connection.ops.adapt_datetimefield_value(now),
        "today": connection.ops.adapt_datefield_value(now.date()),
        "free": Tier.FREE.value,
        "free_limit": free_limit,
        "near_mark": near_limit_mark(free_limit),
        "near_limit": Event.Type.USAGE_NEAR_LIMIT.value,
        "limit_reached": Event.Type.USAGE_LIMIT_REACHED.value,
    }
    names = _sql_names()
    if connection.vendor == "postgresql":
        # A single statement is atomic on its own; no explicit transaction round trips.
        if hashed_key is not None:
            params.update(hashed_key=hashed_key, tier=tier)
        row = db.fetchone(
            _postgresql_sql(with_key=hashed_key is not None),
            params,
            synchronous_commit=settings.LITHTRIX_METER_SYNCHRONOUS_COMMIT,
        )
    else:
        if hashed_key is not None:
            raise NotImplementedError("meter_call(hashed_key=...) needs PostgreSQL")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_METER_UPDATE_SQLITE.format(**names), params)
            updated = cursor.fetchone()
            row = None
            if updated is not None:
                calls_total, tier = updated
                cursor.execute(_DAILY_UPSERT_SQLITE.format(**names), params)
                event_type = _crossed(calls_total, tier, params)
                event_id = None
                if event_type is not None:
                    params.update(calls_total=calls_total, event_type=event_type)
                    cursor.execute(_EVENT_INSERT_SQLITE.format(**names), params)
                    event_id = cursor.fetchone()[0]
                    # In the transaction here: SQLite has no crash window to sweep.
                    event_dispatch_enqueue(event_id=event_id)
                row = (calls_total, event_id)
    if row is None:
        if hashed_key is None:  # a hinted miss is decided (and counted) without the hint
            _count_refusal(names, params)
        return MeterResult(allowed=False, calls_total=None)
    calls_total, event_id = row
    if event_id is not None and connection.vendor == "postgresql":
        # Rare (two calls in an agent's life). A crash before this enqueue leaves the
        # event for the periodic event_sweep job.
        event_dispatch_enqueue(event_id=event_id)
    return MeterResult(allowed=True, calls_total=calls_total, event_id=event_id)


def near_limit_mark(call_limit: int) -> int:
    """The calls_total that is usage.near_limit: 80 % of the cap, and below the cap."""
    return min(math.ceil(call_limit * 0.8), call_limit - 1)


def _crossed(calls_total: int, tier: str, params: dict) -> str | None:
    if tier != Tier.FREE:
        return None
    if calls_total == params["free_limit"]:
        return params["limit_reached"]
    if calls_total == params["near_mark"]:
        return params["near_limit"]
    return None


def _count_refusal(names: dict[str, str], params: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_REFUSED_UPSERT_SQL.format(**names), params)
