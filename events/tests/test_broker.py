import logging

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

    naps = []
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
