import logging
import sqlite3

import psycopg
import pytest
from django.db import OperationalError
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM

from events import broker

pytestmark = pytest.mark.django_db


def test_the_job_system_polls_through_the_outage_tolerant_broker():
    assert type(get_broker()) is broker.OutageTolerantORM


def test_a_poll_the_database_does_not_answer_is_an_empty_queue_logged_once(monkeypatch, caplog):
    def down(self):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    naps: list[float] = []
    monkeypatch.setattr(ORM, "dequeue", down)
    monkeypatch.setattr(broker.time, "sleep", naps.append)
    polling = broker.OutageTolerantORM(list_key="lithtrix")
    with caplog.at_level(logging.INFO):
        answers = [polling.dequeue() for _ in range(3)]

    assert answers == [None, None, None]
    assert naps == [broker.OUTAGE_POLL_SECONDS] * 3
    (line,) = [r for r in caplog.records if r.name == "lithtrix.outages"]
    assert line.getMessage() == (
        "database unavailable (OperationalError): jobs wait; polled again every 2 s"
    )
    assert not [r for r in caplog.records if r.exc_info]


def test_a_poll_that_fails_otherwise_still_raises(monkeypatch):
    def broken(self):
        raise ValueError("not an outage")

    monkeypatch.setattr(ORM, "dequeue", broken)
    with pytest.raises(ValueError, match="not an outage"):
        broker.OutageTolerantORM(list_key="lithtrix").dequeue()


def _wrapped(driver_error: Exception) -> OperationalError:
    """The error Django raises for a driver's: its OperationalError, from the driver's."""
    try:
        try:
            raise driver_error
        except Exception as error:
            raise OperationalError(str(error)) from error
    except OperationalError as wrapped:
        return wrapped


def _sqlite_error(sql: str) -> sqlite3.Error:
    try:
        sqlite3.connect(":memory:").execute(sql)
    except sqlite3.Error as error:
        return error
    raise AssertionError(f"{sql!r} did not fail")


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(psycopg.errors.InvalidPassword("password authentication failed")),
        _wrapped(psycopg.errors.InvalidCatalogName('database "lithtrix" does not exist')),
        _wrapped(psycopg.errors.DeadlockDetected("deadlock detected")),
        _wrapped(_sqlite_error("SELECT * FROM django_q_ormq")),
    ],
    ids=["password", "no-database", "deadlock", "sqlite-no-table"],
)
def test_a_database_that_answers_with_an_error_is_no_outage(monkeypatch, error):
    """What the database says (a refused password, a missing table) must be seen in
    full: django-q2 logs it with its text."""

    def refused(self):
        raise error

    monkeypatch.setattr(ORM, "dequeue", refused)
    with pytest.raises(OperationalError):
        broker.OutageTolerantORM(list_key="lithtrix").dequeue()


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(psycopg.OperationalError("connection failed: Connection refused")),
        _wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator")),
        _wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")),
    ],
    ids=["refused", "shutdown", "starting-up"],
)
def test_a_database_that_does_not_answer_is_an_outage(monkeypatch, error):
    monkeypatch.setattr(ORM, "dequeue", lambda self: (_ for _ in ()).throw(error))
    monkeypatch.setattr(broker.time, "sleep", lambda seconds: None)
    assert broker.OutageTolerantORM(list_key="lithtrix").dequeue() is None
