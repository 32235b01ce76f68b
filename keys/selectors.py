from __future__ import annotations

import functools
from collections.abc import Callable

from django.db import connection

from accounts.models import Agent
from keys.crypto import hash_key
from keys.models import ApiKey
from lithtrix import db


def active_api_key_with_agent(*, key: str) -> ApiKey | None:
    """The unrevoked key matching ``key``, with its agent, in one indexed query."""
    return active_api_key_with_agent_by_hash(hashed_key=hash_key(key))


def active_api_key_with_agent_by_hash(
    *, hashed_key: str, while_waiting: Callable[[], None] | None = None
) -> ApiKey | None:
    """The same, for a key already hashed (keys.crypto.hash_key). ``while_waiting``
    runs while the query is on its way (PostgreSQL; elsewhere just before it)."""
    if connection.vendor == "postgresql":
        return _active_api_key_with_agent_postgresql(hashed_key, while_waiting)
    if while_waiting is not None:
        while_waiting()
    try:
        return ApiKey.objects.select_related("agent").get(
            hashed_key=hashed_key, revoked_at__isnull=True
        )
    except ApiKey.DoesNotExist:
        return None


def live_key_condition(alias: str) -> str:
    """SQL: the key row ``alias`` (hashed_key bound as ``%(hashed_key)s``) still
    authenticates. The key lookup and the metering statement (which re-checks the
    key itself when it skips the lookup, billing.metering.services) share it, so a
    key that stops authenticating stops metering in the same instant."""
    qn = connection.ops.quote_name
    return (
        f"{alias}.{qn(ApiKey._meta.get_field('hashed_key').column)} = %(hashed_key)s "
        f"AND {alias}.{qn(ApiKey._meta.get_field('revoked_at').column)} IS NULL"
    )


@functools.cache
def _lookup_sql() -> tuple[str, list[str], list[str]]:
    qn = connection.ops.quote_name
    key_fields = list(ApiKey._meta.concrete_fields)
    agent_fields = list(Agent._meta.concrete_fields)
    columns = ", ".join(
        [f"k.{qn(f.column)}" for f in key_fields] + [f"a.{qn(f.column)}" for f in agent_fields]
    )
    sql = (
        f"SELECT {columns} FROM {qn(ApiKey._meta.db_table)} k "  # noqa: S608 - names from models
        f"JOIN {qn(Agent._meta.db_table)} a ON a.{qn(Agent._meta.pk.column)} = "
        f"k.{qn(ApiKey._meta.get_field('agent').column)} "
        f"WHERE {live_key_condition('k')}"
    )
    return sql, [f.attname for f in key_fields], [f.attname for f in agent_fields]


def _active_api_key_with_agent_postgresql(
    hashed_key: str, while_waiting: Callable[[], None] | None
) -> ApiKey | None:
    # Every authenticated request runs this: the SQL is built once, prepared once per
    # connection (lithtrix.db), and the rows become models directly (psycopg already
    # returns Python's UUIDs and aware datetimes), which costs a third of what the
    # same query through the ORM costs.
    sql, key_fields, agent_fields = _lookup_sql()
    row = db.fetchone(sql, {"hashed_key": hashed_key}, while_waiting=while_waiting)
    if row is None:
        return None
    api_key = ApiKey.from_db(connection.alias, key_fields, row[: len(key_fields)])
    api_key.agent = Agent.from_db(connection.alias, agent_fields, row[len(key_fields) :])
    return api_key
