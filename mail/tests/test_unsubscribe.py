"""RFC 8058 one-click unsubscribe: POST /v1/unsubscribe?token=..., then only key.leaked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core import signing

from mail.models import EmailSuppression, OwnerEmail, address_digest
from mail.services import unsubscribe_url
from mail.tests.conftest import run_jobs

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_one_click_post_stops_every_mail_but_key_leaked(client, make_agent, smtp, record_event):
    owner = make_agent(owner="ops@example.com")
    record_event(owner.agent, "usage.near_limit")
    run_jobs()
    link = smtp.messages[0]["List-Unsubscribe"].strip()[1:-1]

    response = client.post(path_of(link), ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert response.json() == {"unsubscribed": True}
    assert EmailSuppression.objects.filter(pk=address_digest("ops@example.com")).exists()
    usage = record_event(owner.agent, "usage.limit_reached")
    leaked = record_event(owner.agent, "key.leaked")
    run_jobs()
    assert len(smtp.raw) == 2
    assert smtp.messages[1]["Subject"] == "Your agent's API key was found in public and revoked"
    assert OwnerEmail.objects.get(event=usage).status == "unsubscribed"
    assert OwnerEmail.objects.get(event=leaked).status == "sent"


def test_unsubscribing_twice_is_fine(client, db):
    path = path_of(unsubscribe_url("ops@example.com"))

    first = client.post(path, ONE_CLICK, content_type=FORM)
    second = client.post(path, ONE_CLICK, content_type=FORM)

    assert (first.status_code, second.status_code) == (200, 200)
    assert EmailSuppression.objects.count() == 1


def test_the_token_names_the_address_and_nothing_else(db):
    token = urlsplit(unsubscribe_url("Ops@Example.com")).query.removeprefix("token=")

    assert signing.loads(token.replace("%3A", ":"), salt="mail.unsubscribe") == "ops@example.com"


def test_get_shows_a_button_and_unsubscribes_nobody(client, db):
    response = client.get(path_of(unsubscribe_url("ops@example.com")))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b'<form method="post">' in response.content
    assert b'name="List-Unsubscribe" value="One-Click"' in response.content
    assert not EmailSuppression.objects.exists()


def test_the_pages_button_unsubscribes_and_says_so(client, db):
    response = client.post(
        path_of(unsubscribe_url("ops@example.com")),
        ONE_CLICK,
        content_type=FORM,
        HTTP_ACCEPT="text/html,application/xhtml+xml",
    )

    assert response.status_code == 200
    assert b"<h1>Unsubscribed</h1>" in response.content
    assert EmailSuppression.objects.count() == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=",
        "?token=not-a-token",
        # A valid token's signature on another address.
        "?token=" + signing.dumps("a@example.com", salt="x").replace(":", "%3A"),
    ],
    ids=["missing", "empty", "garbage", "other-salt"],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_token_is_400_and_changes_nothing(client, db, query, method):
    response = getattr(client, method)(f"/v1/unsubscribe{query}")

    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "error_code": "VALIDATION_ERROR",
        "message": "The unsubscribe link is invalid.",
    }
    assert not EmailSuppression.objects.exists()


def test_a_tampered_token_is_400(client, db):
    token = urlsplit(unsubscribe_url("ops@example.com")).query.removeprefix("token=")
    forged = signing.dumps("victim@example.com", salt="mail.unsubscribe")[:-6] + token[-6:]

    response = client.post(f"/v1/unsubscribe?token={forged}", ONE_CLICK, content_type=FORM)

    assert response.status_code == 400
    assert not EmailSuppression.objects.exists()


def test_other_methods_are_405(client, db):
    response = client.put(path_of(unsubscribe_url("ops@example.com")))

    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "GET, POST"
