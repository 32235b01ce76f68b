"""Every event type has a subject and text and HTML templates that render."""

from __future__ import annotations

from typing import Any

import pytest
from django.template.loader import get_template

from events.models import Event
from mail.services import SUBJECTS, owner_email_message
from mail.tests.conftest import LINK_BASE

# What each type's recorder puts in data (events.services callers); never a key.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "key.leaked": {"prefix": "ltx_ab12", "url": "https://gist.example/x"},
    "key.revoked_by_support": {"prefix": "ltx_ab12", "reason": "owner asked"},
    "key.reissued_by_support": {"prefix": "ltx_cd34", "reason": "lost key"},
    "usage.near_limit": {"calls_total": 240, "call_limit": 300},
    "usage.limit_reached": {"calls_total": 300, "call_limit": 300},
    "billing.tier_changed": {"from": "free", "to": "pro", "reason": "payment method set"},
    "billing.cancel_scheduled": {"cancel_at": "2026-12-31T00:00:00Z"},
    "billing.payment_failed": {"next": "Stripe retries in 3 days."},
    "agent.deleted": {},
}


def test_every_event_type_has_a_subject_and_sample():
    assert set(SUBJECTS) == set(Event.Type)
    assert set(SAMPLE_DATA) == set(Event.Type)


@pytest.mark.parametrize("type", sorted(SAMPLE_DATA))
@pytest.mark.parametrize("data", ["sample", "empty"])
def test_the_template_for_every_type_renders(type, data, make_agent, record_event, settings):
    settings.LITHTRIX_EMAIL_LINK_BASE = LINK_BASE
    owner = make_agent(name="research-bot", owner="ops@example.com")
    event = record_event(owner.agent, type, **(SAMPLE_DATA[type] if data == "sample" else {}))
    from mail.models import OwnerEmail

    message = owner_email_message(OwnerEmail.objects.get(event=event))
    text = message.body
    ((html, mimetype),) = message.alternatives
    assert isinstance(html, str)

    assert mimetype == "text/html"
    assert message.subject == SUBJECTS[Event.Type(type)]
    for body in (text, html):
        assert "research-bot" in body
        assert str(owner.agent.pk) in body
        assert event.pk in body
        assert f"{LINK_BASE}/v1/unsubscribe?token=" in body
        assert "{{" not in body and "{%" not in body
    assert "&amp;" not in text and "&#x27;" not in text  # plain text is not HTML-escaped
    assert html.lstrip().startswith("<!doctype html>")
    if data == "sample":
        for value in SAMPLE_DATA[type].values():
            assert str(value) in text


@pytest.mark.parametrize("type", sorted(SAMPLE_DATA))
def test_each_type_has_its_own_templates(type):
    for extension in ("txt", "html"):
        template: Any = get_template(f"events/email/{type}.{extension}")
        assert template.origin.name.endswith(f"templates/events/email/{type}.{extension}")
