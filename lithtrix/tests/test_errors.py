import logging
import os
import subprocess
import sys

import pytest
from django.test import Client

from testing.assertions import assert_envelope


@pytest.fixture
def test_urls(settings):
    settings.ROOT_URLCONF = "lithtrix.tests.urls"


@pytest.fixture
def client_no_raise() -> Client:
    client = Client(raise_request_exception=False)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/v1/nope", "/v1/", "/v1", "/v1/me/", "/v1/keys/", "/v1/keys/nope", "/nope", "/"],
    ids=str,
)
def test_unknown_path_is_404_envelope(client, path):
    response = client.get(path)
    assert_envelope(response, 404, "NOT_FOUND")


@pytest.mark.django_db
def test_unknown_path_is_404_envelope_in_debug_mode_too(client, settings):
    settings.DEBUG = True
    assert_envelope(client.get("/v1/unknown"), 404, "NOT_FOUND")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_wrong_method_is_405_envelope(client, method):
    response = getattr(client, method)("/v1/register")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")


@pytest.mark.django_db
def test_unhandled_error_in_a_view_is_500_envelope_without_details(
    test_urls, client_no_raise, caplog
):
    caplog.set_level(logging.ERROR)
    response = client_no_raise.get("/v1/test/broken", HTTP_X_REQUEST_ID="req-123")

    body = assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "boom" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert "details" not in body
    assert response["X-Request-Id"] == "req-123"
    # Logged once, with the request id, so staff can find it.
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1
    assert records[0].request_id == "req-123"
    assert "boom" in caplog.text


@pytest.mark.django_db
def test_unhandled_error_outside_drf_is_500_envelope(test_urls, client_no_raise):
    response = client_no_raise.get("/v1/test/plain-broken")
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "plain view boom" not in response.content.decode()


@pytest.mark.django_db
def test_request_id_is_generated_when_absent_or_unsafe(client):
    generated = client.get("/v1/nope")["X-Request-Id"]
    assert len(generated) == 32
    unsafe = client.get("/v1/nope", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-Id"]
    assert unsafe != "bad id\nwith newline" and len(unsafe) == 32


@pytest.mark.django_db
def test_disallowed_host_is_400_envelope(client_no_raise):
    response = client_no_raise.get("/v1/me", HTTP_HOST="evil.example.com")
    assert_envelope(response, 400, "VALIDATION_ERROR")


@pytest.mark.django_db
def test_oversized_body_on_an_endpoint_that_ignores_bodies_is_413(client, settings, registered):
    settings.LITHTRIX_MAX_BODY_BYTES = 100
    response = client.post(
        "/v1/keys/rotate", "x" * 500, content_type="application/json", **registered.auth
    )
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.django_db
@pytest.mark.parametrize("declared", ["-5", "+2", " 2", "1_0", "2, 5", "abc", "\u0662"])
def test_a_content_length_that_is_not_digits_is_400_and_changes_nothing(
    client, registered, declared
):
    response = client.post(
        "/v1/keys/rotate",
        "{}",
        content_type="application/json",
        CONTENT_LENGTH=declared,
        **registered.auth,
    )
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert response.json()["message"] == "Invalid Content-Length header."
    # The key was not rotated: it still authenticates.
    assert client.get("/v1/me", **registered.auth).status_code == 200


@pytest.mark.django_db
def test_valid_json_is_parsed(test_urls, client):
    response = client.post("/v1/test/echo", {"a": [1, "b"]}, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"received": {"a": [1, "b"]}}


@pytest.mark.slow
def test_secret_key_is_required_unless_debug():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env["DJANGO_SETTINGS_MODULE"] = "lithtrix.settings"
    code = "import django; django.setup()"
    refused = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in refused.stderr

    env["DJANGO_DEBUG"] = "on"
    allowed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.django_db(transaction=True)
def test_an_error_inside_an_atomic_request_marks_it_for_rollback(monkeypatch):
    from django.db import connection, transaction

    from accounts.models import Agent
    from lithtrix.core.exceptions import NotFoundError
    from lithtrix.core.responses import api_exception_handler

    # ATOMIC_REQUESTS: the view's writes share the request's transaction.
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    with transaction.atomic():
        Agent.objects.create(agent_name="written-before-the-error", owner_identifier="o")
        response = api_exception_handler(NotFoundError(), {})
        assert connection.needs_rollback

    assert response.status_code == 404
    assert response.data["error_code"] == "NOT_FOUND"
    assert not Agent.objects.filter(agent_name="written-before-the-error").exists()
