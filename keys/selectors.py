from __future__ import annotations

import functools

from django.db import connection

from accounts.models import Agent
from keys.crypto import hash_key
from keys.models import ApiKey


def active_api_key_with_agent(*, key: str) -> ApiKey | None:
    """The unrevoked key matching ``key``, with its agent, in one indexed query."""
    hashed_key = hash_key(key)
    if connection.vendor == "postgresql":
        return _active_api_key_with_agent_postgresql(hashed_key)
    try:
        return ApiKey.objects.select_related("agent").get(
            hashed_key=hashed_key, revoked_at__isnull=True
        )
    except ApiKey.DoesNotExist:
        return None


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
        f"WHERE k.{qn(ApiKey._meta.get_field('hashed_key').column)} = %s "
        f"AND k.{qn(ApiKey._meta.get_field('revoked_at').column)} IS NULL"
    )
    return sql, [f.attname for f in key_fields], [f.attname for f in agent_fields]


def _active_api_key_with_agent_postgresql(hashed_key: str) -> ApiKey | None:
    # Every authenticated request runs this: the SQL is built once and the rows become
    # models directly (psycopg already returns Python's UUIDs and aware datetimes),
    # which costs a third of what the same query through the ORM costs.
    sql, key_fields, agent_fields = _lookup_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [hashed_key])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key = ApiKey.from_db(connection.alias, key_fields, row[: len(key_fields)])
    api_key.agent = Agent.from_db(connection.alias, agent_fields, row[len(key_fields) :])
    return api_key
