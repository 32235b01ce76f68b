"""Staff see each owner e-mail's delivery: status, attempts, last error."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client

from accounts.management.commands.support_group import support_group
from mail.models import OwnerEmail
from mail.tests.conftest import run_jobs


def staff_client() -> Client:
    """A support user: staff, view permissions only (the support group)."""
    user = get_user_model().objects.create_user("support", is_staff=True)
    user.groups.add(support_group())
    client = Client()
    client.force_login(user)
    return client


def test_staff_see_a_failed_delivery_with_its_error(make_agent, smtp, record_event, settings):
    settings.EMAIL_HOST_PASSWORD = "smtp-s3cret"
    owner = make_agent(owner="ops@example.com")
    smtp.stop()
    event = record_event(owner.agent, "usage.near_limit")
    run_jobs()
    owner_email = OwnerEmail.objects.get(event=event)
    client = staff_client()

    listing = client.get("/admin/mail/owneremail/")
    page = client.get(f"/admin/mail/owneremail/{owner_email.pk}/change/")
    found = client.get("/admin/mail/owneremail/", {"q": event.pk})

    assert listing.status_code == page.status_code == found.status_code == 200
    for response in (listing, page):
        content = response.content.decode()
        assert "ops@example.com" in content
        assert "pending" in content.lower()
        assert "ConnectionRefusedError: Connection refused" in content
        assert "smtp-s3cret" not in content
    assert "ops@example.com" in found.content.decode()


def test_staff_find_an_unsubscribed_address_by_typing_it(client, db):
    from mail.services import email_unsubscribe

    email_unsubscribe(address="ops@example.com")
    staff = staff_client()

    hit = staff.get("/admin/mail/emailsuppression/", {"q": "OPS@example.com"})
    miss = staff.get("/admin/mail/emailsuppression/", {"q": "other@example.com"})

    assert "1 email suppression" in hit.content.decode()
    assert "0 email suppressions" in miss.content.decode()
