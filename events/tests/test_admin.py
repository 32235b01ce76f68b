import pytest
from django.contrib.admin.utils import quote
from django.db import transaction
from django_q.models import Failure, OrmQ

from events.services import event_record
from events.tasks import event_dispatch

EVENTS_URL = "/admin/events/event/"


@pytest.mark.django_db
def test_staff_see_events_with_type_and_dispatch_state(support_client, make_agent):
    agent = make_agent(name="leaky-bot").agent
    with transaction.atomic():
        sent = event_record(agent=agent, type="key.leaked", data={"prefix": "ltx_abcd1234"})
        event_record(agent=agent, type="usage.near_limit", data={"calls_total": 240})
    event_dispatch(sent.id)

    page = support_client.get(EVENTS_URL)
    # quote(): the admin's own escaping of a primary key in its URLs. Unquoted, an id
    # like evt_24... reads as "evt$..." ("_24" is the admin's escape for "$").
    detail = support_client.get(f"{EVENTS_URL}{quote(sent.id)}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "key.leaked" in html and "usage.near_limit" in html and "leaky-bot" in html
    assert html.count('alt="True"') == 1 and html.count('alt="False"') == 1
    assert detail.status_code == 200
    assert "ltx_abcd1234" in detail.content.decode()
    assert b'name="_save"' not in detail.content


@pytest.mark.django_db
def test_support_cannot_change_events(support_client, make_agent):
    agent = make_agent().agent
    with transaction.atomic():
        event = event_record(agent=agent, type="agent.deleted", data={})

    response = support_client.post(f"{EVENTS_URL}{event.id}/delete/", {"post": "yes"})

    assert response.status_code == 403


@pytest.mark.django_db
def test_staff_resubmit_a_dead_job_from_the_failed_tasks(admin_client):
    dead = Failure.objects.create(
        id="0123456789abcdef0123456789abcdef",
        name="event_dispatch:evt_x",
        func="events.tasks.event_dispatch",
        args=("evt_x",),
        kwargs={"attempt": 8},
        started="2026-01-01T00:00:00Z",
        stopped="2026-01-01T00:00:01Z",
        success=False,
        result="ConnectionError: SMTP server down",
    )

    listing = admin_client.get("/admin/django_q/failure/")
    response = admin_client.post(
        "/admin/django_q/failure/",
        {"action": "resubmit_task", "_selected_action": [dead.pk]},
    )

    assert listing.status_code == 200
    assert "events.tasks.event_dispatch" in listing.content.decode()
    assert response.status_code == 302
    assert not Failure.objects.exists()
    [job] = OrmQ.objects.all()
    assert (job.task["func"], job.task["args"], job.task["kwargs"]) == (
        "events.tasks.event_dispatch",
        ("evt_x",),
        {"attempt": 8},
    )
