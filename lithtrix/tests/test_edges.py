"""Answers Django would draw itself are the envelope under /v1; bodies, hosts, probes,
caching headers and the OpenAPI document at the edges."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client, RequestFactory

from lithtrix.core.parsers import MAX_JSON_DEPTH, json_depth_exceeds
from lithtrix.core.responses import csrf_failure_view
from testing.assertions import assert_envelope

METHODS = ["get", "post", "put", "patch", "delete", "options"]


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
@pytest.mark.parametrize("method", METHODS)
def test_unknown_v1_path_is_404_for_every_method(settings, method, debug):
    settings.DEBUG = debug
    client = Client(enforce_csrf_checks=True)
    call = getattr(client, method)
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = call("/v1/nothing/here", **body)
    assert_envelope(response, 404, "NOT_FOUND")
    assert response["Cache-Control"] == "no-store"


def test_csrf_failure_under_v1_is_the_envelope():
    request = RequestFactory().post("/v1/anything")
    response = csrf_failure_view(request, reason="CSRF cookie not set.")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "status": "error",
        "error_code": "FORBIDDEN",
        "message": "CSRF verification failed.",
    }


def test_csrf_failure_elsewhere_is_djangos_page():
    response = csrf_failure_view(RequestFactory().post("/admin/login/"), reason="x")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.urls("lithtrix.tests.urls")
def test_plain_view_crash_under_debug_is_the_envelope_not_the_debug_page(settings, caplog):
    settings.DEBUG = True
    response = Client(raise_request_exception=False).get("/v1/test/plain-broken")
    assert_envelope(response, 500, "INTERNAL_ERROR")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info  # one traceback: a bug, not an outage


# --- hosts and probes --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_disallowed_host_is_a_400_envelope_and_one_warning(client, settings, caplog, debug):
    settings.DEBUG = debug
    caplog.set_level(logging.INFO)
    response = client.get("/v1/me", HTTP_HOST="evil.example")
    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Host" in body["message"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in warnings] == [
        ("django.security.DisallowedHost", "WARNING")
    ]
    assert warnings[0].exc_info is None
    assert "evil.example" in warnings[0].getMessage()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("host", ["10.1.2.3", "10.1.2.3:8000", "anything.example", "[::1]"])
def test_probes_answer_whatever_the_host(client, path, host, caplog):
    response = client.get(path, HTTP_HOST=host)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_dev_servers_request_lines_are_off(caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("django.server").info('"GET /v1/me?api_key=ltx_abc HTTP/1.1" 200 12')
    assert [r for r in caplog.records if r.name == "django.server"] == []


# --- bodies ----------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.django_db
@pytest.mark.parametrize("body", [nested(MAX_JSON_DEPTH + 1), "[" * 2000, '{"a":' * 5000])
def test_json_nested_too_deep_is_400_with_details(api_client, body):
    response = api_client.post("/v1/register", data=body, content_type="application/json")
    payload = assert_envelope(response, 400, "VALIDATION_ERROR")
    expected = f"Arrays and objects nest at most {MAX_JSON_DEPTH} deep."
    assert payload["details"] == {"body": [expected]}


@pytest.mark.django_db
@pytest.mark.urls("lithtrix.tests.urls")
def test_json_at_the_nesting_limit_is_parsed(api_client):
    body = '{"a":' * (MAX_JSON_DEPTH - 1) + "[]" + "}" * (MAX_JSON_DEPTH - 1)
    response = api_client.post("/v1/test/echo", data=body, content_type="application/json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("raw", "exceeds"),
    [
        (nested(3).encode(), False),
        (nested(4).encode(), True),
        (b'["[[[[[[[[", "{{{{{{"]', False),  # brackets inside strings do not count
        (b'[["\\"[[[[[["]]', False),  # nor after an escaped quote
        (b"[[],[],[],[],[]]", False),  # siblings are not depth
    ],
)
def test_json_depth_counts_only_structure(raw, exceeds):
    assert json_depth_exceeds(raw, limit=3) is exceeds


# --- Cache-Control ----------------------------------------------------------------


@pytest.mark.django_db
def test_every_v1_answer_is_no_store(api_client, registered):
    answers = [
        api_client.post(
            "/v1/register", {"agent_name": "a", "owner_identifier": "o@example.com"}, format="json"
        ),
        api_client.post("/v1/keys/rotate", **registered.auth),
        api_client.get("/v1/me", HTTP_AUTHORIZATION="Bearer ltx_nope"),
        api_client.get("/v1/capabilities"),
        api_client.get("/v1/openapi.json"),
    ]
    assert [a.status_code for a in answers] == [201, 200, 401, 200, 200]
    assert all(a["Cache-Control"] == "no-store" for a in answers)


# --- the OpenAPI document ---------------------------------------------------------


@pytest.mark.django_db
def test_openapi_document_is_built_once_per_process(api_client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from lithtrix import views

    views._rendered_schemas.clear()
    calls = []
    original = SchemaGenerator.get_schema

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counting)
    first = api_client.get("/v1/openapi.json")
    second = api_client.get("/v1/openapi.json")

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.content == second.content
    assert first.json()["openapi"].startswith("3.")
    assert len(calls) == 1


@pytest.mark.django_db
def test_openapi_document_is_rate_limited_per_ip_in_its_own_bucket(
    api_client, settings, throttle_rates
):
    throttle_rates(openapi="2/m")
    throttle_rates(register="1/m")
    statuses = [api_client.get("/v1/openapi.json").status_code for _ in range(2)]
    refused = api_client.get("/v1/openapi.json")

    assert statuses == [200, 200]
    assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused["RateLimit-Limit"] == "2"
    assert int(refused["Retry-After"]) >= 1
    # Another address, and registration from this one, are unaffected.
    assert api_client.get("/v1/openapi.json", REMOTE_ADDR="192.0.2.9").status_code == 200
    registration = api_client.post(
        "/v1/register", {"agent_name": "b", "owner_identifier": "o@example.com"}, format="json"
    )
    assert registration.status_code == 201
