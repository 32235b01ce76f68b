from __future__ import annotations

import datetime
import functools
import uuid

from django.db import connection
from django.db.models import Field, Q, QuerySet
from django.utils import timezone

from accounts.models import Agent
from keys.crypto import hash_key
from keys.models import ApiKey
from lithtrix.core import db


def working_keys_condition(now: datetime.datetime) -> Q:
    """A working key (one that still authenticates): not revoked, not past its overlap
    expiry. The same condition as SQL is working_key_sql (test_selectors holds the two
    to the same keys)."""
    return Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def working_api_key_with_agent(*, key: str) -> ApiKey | None:
    """The working key matching ``key``, with its (not deleted) agent, in one indexed query.

    Revocation, an overlap's expiry and the agent's deletion are all checked by that
    one query: a key is refused the moment its expiry passes.
    """
    return working_api_key_with_agent_by_hash(hashed_key=hash_key(key))


def working_api_key_with_agent_by_hash(*, hashed_key: str) -> ApiKey | None:
    """The same, for a key already hashed (keys.crypto.hash_key)."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        return _working_api_key_with_agent_postgresql(hashed_key, now)
    return (
        ApiKey.objects.select_related("agent")
        .filter(working_keys_condition(now), hashed_key=hashed_key, agent__deleted_at__isnull=True)
        .first()
    )


def key_agent_id_by_hash(*, hashed_key: str) -> uuid.UUID | None:
    """The agent a key was issued to, whether or not the key still works."""
    return ApiKey.objects.filter(hashed_key=hashed_key).values_list("agent_id", flat=True).first()


def agent_working_keys(*, agent: Agent) -> QuerySet[ApiKey]:
    """The agent's keys that still authenticate, newest first."""
    return ApiKey.objects.filter(working_keys_condition(timezone.now()), agent=agent).order_by(
        "-created_at", "-id"
    )


def working_key_sql(key: str, agent: str) -> str:
    """SQL: the key row ``key`` (hashed_key bound as ``%(hashed_key)s``) still
    authenticates as a row of agent ``agent`` joined to it: not revoked, not past its
    overlap expiry (``%(now)s``, the application's clock, which also wrote
    expires_at), its agent not deleted. The key lookup and the metering statement
    (which re-checks the key itself when it skips the lookup,
    billing.metering.services) share it, so a key that stops authenticating stops
    metering in the same instant."""
    qn = _quote

    expires_at = f"{key}.{qn(ApiKey._meta.get_field('expires_at').column)}"
    return (
        f"{key}.{qn(ApiKey._meta.get_field('hashed_key').column)} = %(hashed_key)s "
        f"AND {key}.{qn(ApiKey._meta.get_field('revoked_at').column)} IS NULL "
        f"AND ({expires_at} IS NULL OR {expires_at} > %(now)s) "
        f"AND {agent}.{qn(Agent._meta.get_field('deleted_at').column)} IS NULL"
    )


def _quote(column: str | None) -> str:
    assert column is not None  # concrete fields and tables always have one
    return connection.ops.quote_name(column)


@functools.cache
def _lookup_sql() -> tuple[str, list[str], list[str]]:
    qn = _quote
    key_fields = list(ApiKey._meta.concrete_fields)
    agent_fields = list(Agent._meta.concrete_fields)
    columns = ", ".join(
        [f"k.{qn(f.column)}" for f in key_fields] + [f"a.{qn(f.column)}" for f in agent_fields]
    )
    sql = (
        f"SELECT {columns} FROM {qn(ApiKey._meta.db_table)} k "  # noqa: S608 - names from models
        f"JOIN {qn(Agent._meta.db_table)} a ON a.{qn(Agent._meta.pk.column)} = "
        f"k.{qn(ApiKey._meta.get_field('agent').column)} "
        f"WHERE {working_key_sql('k', 'a')}"
    )
    return sql, [_column(f) for f in key_fields], [_column(f) for f in agent_fields]


def _column(field: Field) -> str:
    assert field.attname is not None  # concrete fields always have one
    return field.attname


def _working_api_key_with_agent_postgresql(
    hashed_key: str, now: datetime.datetime
) -> ApiKey | None:
    # Every authenticated request runs this: the SQL is built once, prepared once per
    # connection (lithtrix.core.db), and the rows become models directly (psycopg already
    # returns Python's UUIDs and aware datetimes), which costs a third of what the
    # same query through the ORM costs.
    sql, key_fields, agent_fields = _lookup_sql()
    row = db.fetchone(sql, {"hashed_key": hashed_key, "now": now})
    if row is None:
        return None
    api_key = ApiKey.from_db(connection.alias, key_fields, row[: len(key_fields)])
    api_key.agent = Agent.from_db(connection.alias, agent_fields, row[len(key_fields) :])
    return api_key
