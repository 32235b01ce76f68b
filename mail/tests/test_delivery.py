"""Owner e-mail through a real SMTP server: headers, once-only delivery, retries, the daily cap."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ

from events.models import Event
from events.services import event_dispatch_enqueue
from events.tasks import event_dispatch
from keys.tests.test_leaked import report, signed
from mail.models import OwnerEmail, OwnerEmailDailyCount, address_digest
from mail.services import (
    OwnerEmailNotSent,
    email_unsubscribe,
    owner_email_send,
    owner_emails_due_enqueue,
)
from mail.tests.conftest import LINK_BASE, run_jobs
from testing.factories import set_calls_total

KEY_PATTERN = re.compile(rb"ltx_[A-Za-z0-9]{36}")
DISPATCH, SEND = "events.tasks.event_dispatch", "mail.tasks.owner_email_send"


def test_owner_gets_a_text_and_html_message_with_one_click_unsubscribe(
    make_agent, smtp, record_event
):
    owner = make_agent(name="research-bot", owner="ops@example.com")

    event = record_event(owner.agent, "billing.cancel_scheduled", cancel_at="2026-12-31")
    runs = run_jobs()

    assert [run.func for run in runs] == [
        "events.tasks.event_dispatch",
        "mail.tasks.owner_email_send",
    ]
    assert runs[1].result == "sent"
    assert smtp.recipients == [["ops@example.com"]]
    (message,) = smtp.messages
    assert message["From"] == "Lithtrix <no-reply@lithtrix.test>"
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == "Your agent's Pro plan will end"
    assert message["Auto-Submitted"] == "auto-generated"
    # Folded onto its own line (it is long): unfolded, it is the bracketed URL.
    unsubscribe = message["List-Unsubscribe"].strip()
    assert re.fullmatch(rf"<{re.escape(LINK_BASE)}/v1/unsubscribe\?token=[\w.:%-]+>", unsubscribe)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part for part in message.iter_parts())
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert "2026-12-31" in text.get_content()
    assert "research-bot" in text.get_content()
    assert unsubscribe[1:-1] in text.get_content()
    assert "<strong>research-bot</strong>" in html.get_content()
    owner_email = OwnerEmail.objects.get(event=event)
    assert (owner_email.status, owner_email.attempts, owner_email.last_error) == ("sent", 1, "")
    assert owner_email.sent_at is not None
    # The same on a resend after a crash, so the receiving side can drop the copy.
    assert message["Message-ID"] == f"<{event.pk}.{owner_email.pk}@lithtrix.test>"


def test_no_key_is_in_the_message(make_agent, smtp, record_event):
    owner = make_agent(owner="ops@example.com")

    record_event(owner.agent, "key.leaked", prefix=owner.api_key[:12], url="https://gist.example")
    run_jobs()

    (raw,) = smtp.raw
    assert owner.api_key.encode() not in raw
    assert KEY_PATTERN.search(raw) is None
    assert b"gist.example" in raw


def test_registering_sends_no_mail(api_client, smtp, db):
    response = api_client.post(
        "/v1/register",
        {"agent_name": "new-bot", "owner_identifier": "ops@example.com"},
        format="json",
    )
    run_jobs()

    assert response.status_code == 201
    assert smtp.raw == []
    assert not OwnerEmail.objects.exists()


def test_an_owner_that_is_not_an_address_gets_no_mail(make_agent, smtp, record_event):
    owner = make_agent(owner="team-research")

    record_event(owner.agent, "usage.near_limit")
    runs = run_jobs()

    assert [run.func for run in runs] == [DISPATCH]
    assert smtp.raw == []
    assert not OwnerEmail.objects.exists()


def test_a_deleted_agents_owner_is_told_at_the_address_it_had_which_is_then_erased(
    api_client, make_agent, smtp, record_event
):
    owner = make_agent(name="old-bot", owner="ops@example.com")
    earlier = record_event(owner.agent, "usage.near_limit")
    run_jobs()

    response = api_client.delete("/v1/me", {"confirm": "old-bot"}, format="json", **owner.auth)
    run_jobs()

    assert response.status_code == 204
    owner.agent.refresh_from_db()
    assert owner.agent.owner_identifier == f"deleted-{owner.agent.pk}"
    assert smtp.recipients == [["ops@example.com"], ["ops@example.com"]]
    assert smtp.messages[1]["Subject"] == "Your agent was deleted"
    assert "old-bot" in smtp.messages[1].get_body(("plain",)).get_content()
    deleted = Event.objects.get(agent=owner.agent, type="agent.deleted")
    for event in (earlier, deleted):
        owner_email = OwnerEmail.objects.get(event=event)
        assert (owner_email.status, owner_email.address, owner_email.agent_name) == ("sent", "", "")
    assert "old-bot" not in str(deleted.data)


def test_an_event_recorded_in_sql_gets_its_mail_at_dispatch(make_agent, smtp):
    owner = make_agent(owner="ops@example.com")

    # As the metering statement does: the event row without event_record.
    with transaction.atomic():
        event = Event.objects.create(
            agent=owner.agent, type="usage.near_limit", data={"calls_total": 240}
        )
        event_dispatch_enqueue(event_id=event.pk)
    run_jobs()

    assert smtp.recipients == [["ops@example.com"]]
    assert OwnerEmail.objects.get(event=event).status == "sent"


def test_a_second_job_for_a_sent_message_sends_nothing(make_agent, smtp, record_event):
    owner = make_agent(owner="ops@example.com")
    event = record_event(owner.agent, "usage.limit_reached", call_limit=300)
    run_jobs()
    owner_email = OwnerEmail.objects.get(event=event)

    assert owner_email_send(owner_email_id=owner_email.pk) is None

    assert len(smtp.raw) == 1
    assert OwnerEmail.objects.get(pk=owner_email.pk).attempts == 1


def test_smtp_outage_delays_the_mail_and_it_arrives_once_when_smtp_is_back(
    make_agent, smtp, record_event, clock
):
    owner = make_agent(owner="ops@example.com")
    smtp.stop()

    event = record_event(owner.agent, "billing.payment_failed")
    dispatch, send = run_jobs()

    assert dispatch.error is None
    assert isinstance(send.error, OwnerEmailNotSent)
    owner_email = OwnerEmail.objects.get(event=event)
    assert (owner_email.status, owner_email.attempts) == ("pending", 1)
    assert owner_email.last_error == "ConnectionRefusedError: Connection refused"
    assert owner_email.next_attempt_at == clock.now + timedelta(seconds=60)
    # Not due yet: the sweep leaves it alone.
    assert owner_emails_due_enqueue() == 0

    clock.advance(seconds=61)
    assert owner_emails_due_enqueue() == 1
    (retry,) = run_jobs()
    assert isinstance(retry.error, OwnerEmailNotSent)
    owner_email.refresh_from_db()
    assert owner_email.attempts == 2
    assert owner_email.next_attempt_at == clock.now + timedelta(seconds=120)

    smtp.start()
    clock.advance(seconds=121)
    assert owner_emails_due_enqueue() == 1
    (delivered,) = run_jobs()

    assert delivered.result == "sent"
    assert smtp.recipients == [["ops@example.com"]]
    owner_email.refresh_from_db()
    assert (owner_email.status, owner_email.attempts, owner_email.last_error) == ("sent", 3, "")
    clock.advance(hours=2)
    assert owner_emails_due_enqueue() == 0
    assert len(smtp.raw) == 1


def test_the_request_that_causes_an_event_is_answered_while_smtp_is_down(
    client, make_agent, smtp, clock
):
    owner = make_agent(owner="ops@example.com")
    set_calls_total(owner.agent, 239)
    smtp.stop()

    # The metered call that reaches 80 % of the free calls records usage.near_limit.
    response = client.get("/v1/authorize", **owner.auth)
    runs = run_jobs()

    assert response.status_code == 200
    assert response.json()["agent_id"] == str(owner.agent.pk)
    assert [run.func for run in runs] == [DISPATCH, SEND]
    assert runs[0].error is None
    assert isinstance(runs[1].error, OwnerEmailNotSent)
    assert OwnerEmail.objects.get().status == "pending"

    smtp.start()
    clock.advance(minutes=2)
    owner_emails_due_enqueue()
    run_jobs()
    clock.advance(hours=1)
    owner_emails_due_enqueue()
    run_jobs()
    assert smtp.recipients == [["ops@example.com"]]
    assert smtp.messages[0]["Subject"] == "Your agent has used 80 % of its free calls"
    assert "240 of its 300" in smtp.messages[0].get_body(("plain",)).get_content()


def test_the_sweep_takes_over_a_first_attempt_whose_job_was_lost(
    make_agent, smtp, record_event, clock
):
    owner = make_agent(owner="ops@example.com")
    event = record_event(owner.agent, "usage.near_limit")
    event_dispatch(event.pk)
    # The dispatch ran; its send job is lost (say, failed before it could claim).
    OrmQ.objects.all().delete()
    assert owner_emails_due_enqueue() == 0

    clock.advance(minutes=6)
    assert owner_emails_due_enqueue() == 1
    run_jobs()

    assert len(smtp.raw) == 1


def test_a_recipient_refused_for_good_is_not_retried(make_agent, smtp, record_event, clock):
    owner = make_agent(owner="gone@example.com")
    smtp.inbox.refused.add("gone@example.com")

    event = record_event(owner.agent, "usage.near_limit")
    runs = run_jobs()

    assert runs[-1].error is None
    owner_email = OwnerEmail.objects.get(event=event)
    assert owner_email.status == "refused"
    assert owner_email.last_error == "SMTPRecipientsRefused: 550 5.1.1 No such mailbox"
    clock.advance(days=1)
    assert owner_emails_due_enqueue() == 0


def test_daily_limit_per_address_but_key_leaked_always_goes_out(
    make_agent, smtp, record_event, settings, clock
):
    settings.LITHTRIX_OWNER_EMAILS_PER_DAY = 2
    first = make_agent(owner="ops@example.com")
    second = make_agent(owner="OPS@example.com")  # the same mailbox, counted together

    events = [
        record_event(first.agent, "usage.near_limit"),
        record_event(second.agent, "usage.near_limit"),
        record_event(first.agent, "usage.limit_reached"),
        record_event(second.agent, "key.leaked"),
    ]
    run_jobs()

    statuses = [OwnerEmail.objects.get(event=event).status for event in events]
    assert statuses == ["sent", "sent", "over_daily_limit", "sent"]
    assert len(smtp.raw) == 3
    count = OwnerEmailDailyCount.objects.get(address_digest=address_digest("ops@example.com"))
    assert count.count == 2

    clock.advance(days=1)
    record_event(first.agent, "billing.tier_changed", to="pro")
    run_jobs()
    assert len(smtp.raw) == 4


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_daily_limit_holds_under_concurrent_workers(make_agent, smtp, record_event, settings):
    settings.LITHTRIX_OWNER_EMAILS_PER_DAY = 3
    owner = make_agent(owner="ops@example.com")
    events = [record_event(owner.agent, "usage.near_limit") for _ in range(8)]
    for event in events:
        event_dispatch(event.pk)
    ids = list(OwnerEmail.objects.values_list("pk", flat=True))
    barrier = threading.Barrier(len(ids))
    results: list[object] = []

    def worker(pk: int) -> None:
        try:
            barrier.wait()
            results.append(owner_email_send(owner_email_id=pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(pk,)) for pk in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(map(str, results)) == ["over_daily_limit"] * 5 + ["sent"] * 3
    assert len(smtp.raw) == 3
    assert OwnerEmailDailyCount.objects.get().count == 3


def test_a_second_job_while_the_first_holds_the_message_sends_nothing(
    make_agent, smtp, record_event
):
    owner = make_agent(owner="ops@example.com")
    event = record_event(owner.agent, "usage.near_limit")
    event_dispatch(event.pk)
    owner_email = OwnerEmail.objects.get(event=event)
    # A worker has claimed it and is talking to the mail server.
    OwnerEmail.objects.filter(pk=owner_email.pk).update(
        attempts=1, claimed_until=timezone.now() + timedelta(minutes=2)
    )

    assert owner_email_send(owner_email_id=owner_email.pk) is None
    assert owner_emails_due_enqueue() == 0
    assert smtp.raw == []


def test_unsubscribing_during_an_outage_stops_the_retries(make_agent, smtp, record_event, clock):
    owner = make_agent(owner="ops@example.com")
    smtp.stop()
    event = record_event(owner.agent, "usage.near_limit")
    run_jobs()
    email_unsubscribe(address="ops@example.com")
    smtp.start()

    clock.advance(minutes=2)
    owner_emails_due_enqueue()
    run_jobs()

    assert smtp.raw == []
    assert OwnerEmail.objects.get(event=event).status == "unsubscribed"


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, no except clause catches it."""


def test_a_worker_killed_after_the_server_accepted_is_the_one_resend(
    make_agent, smtp, record_event, clock, monkeypatch
):
    owner = make_agent(owner="ops@example.com")
    event = record_event(owner.agent, "usage.near_limit")
    event_dispatch(event.pk)
    send = EmailMultiAlternatives.send

    def send_then_die(message, *args, **kwargs):
        send(message, *args, **kwargs)
        raise WorkerKilled

    monkeypatch.setattr(EmailMultiAlternatives, "send", send_then_die)
    with pytest.raises(WorkerKilled):
        run_jobs()
    monkeypatch.setattr(EmailMultiAlternatives, "send", send)
    # Its claim holds the message until it runs out (twice the job timeout).
    assert owner_emails_due_enqueue() == 0
    clock.advance(seconds=121)
    assert owner_emails_due_enqueue() == 1
    run_jobs()

    first, second = smtp.messages
    assert first["Message-ID"] == second["Message-ID"]
    owner_email = OwnerEmail.objects.get(event=event)
    assert (owner_email.status, owner_email.attempts) == ("sent", 2)


def test_a_leaked_key_report_reaches_an_unsubscribed_owner_past_the_daily_cap(
    api_client, make_agent, smtp, github_key, settings
):
    settings.LITHTRIX_OWNER_EMAILS_PER_DAY = 0
    owner = make_agent(owner="ops@example.com")
    email_unsubscribe(address="ops@example.com")
    body = report(owner.api_key)

    response = api_client.post(
        "/v1/keys/leaked", body, content_type="application/json", **signed(github_key, body)
    )
    run_jobs()

    assert response.status_code == 200
    (raw,) = smtp.raw
    assert owner.api_key.encode() not in raw
    assert KEY_PATTERN.search(raw) is None
    (message,) = smtp.messages
    assert message["Subject"] == "Your agent's API key was found in public and revoked"
    assert (
        "https://github.com/octo/repo/blob/abc/config.py#L0"
        in message.get_body(("plain",)).get_content()
    )
