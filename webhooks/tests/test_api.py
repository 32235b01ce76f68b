import socket
import time
import uuid

import pytest

from testing.assertions import NOT_A_JSON_OBJECT, assert_envelope
from webhooks import serializers
from webhooks.models import WebhookEndpoint

WEBHOOK = "/v1/webhook"
DELIVERIES = "/v1/webhook/deliveries"


def put(api_client, registered, url, **headers):
    return api_client.put(WEBHOOK, {"url": url}, format="json", **registered.auth, **headers)


@pytest.mark.django_db
def test_put_sets_the_endpoint_and_shows_the_secret_once(api_client, registered, receiver):
    response = put(api_client, registered, receiver.url)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"url", "secret", "events"}
    assert body["url"] == receiver.url
    assert body["secret"].startswith("whsec_")
    assert "key.leaked" in body["events"] and "agent.deleted" in body["events"]
    endpoint = WebhookEndpoint.objects.get(agent=registered.agent)
    assert body["secret"] not in endpoint.secret_sealed
    assert body["secret"][len("whsec_") :] not in endpoint.secret_sealed
    assert body["secret"] not in repr(endpoint) and body["secret"] not in str(endpoint)

    shown = api_client.get(WEBHOOK, **registered.auth)
    assert shown.status_code == 200
    assert set(shown.json()) == {"url", "events", "created_at", "disabled_at"}
    assert shown.json()["disabled_at"] is None
    assert body["secret"] not in shown.content.decode()


@pytest.mark.django_db
def test_put_again_rotates_the_secret(api_client, registered, receiver):
    first = put(api_client, registered, receiver.url).json()["secret"]
    second = put(api_client, registered, receiver.url).json()["secret"]
    assert first != second
    assert WebhookEndpoint.objects.filter(agent=registered.agent).count() == 1


@pytest.mark.django_db
def test_put_with_the_same_idempotency_key_replays_the_first_answer(
    api_client, registered, receiver
):
    key = {"HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4())}
    first = put(api_client, registered, receiver.url, **key)
    again = put(api_client, registered, receiver.url, **key)
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/",
        "https://127.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/",
        "https://[fd00:ec2::254]/",
        "https://user:pass@example.com/",
        "ftp://example.com/",
        "not a url",
        "https://",
        "https://example.com:99999/",
    ],
)
def test_put_refuses_urls_that_are_not_public_https(api_client, registered, settings, url):
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = False
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = False
    body = assert_envelope(put(api_client, registered, url), 400, "VALIDATION_ERROR")
    assert set(body["details"]) == {"url"}
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "http://[::ffff:127.0.0.1]/"])
def test_http_allowed_still_refuses_loopback(api_client, registered, settings, url):
    settings.LITHTRIX_WEBHOOK_ALLOW_HTTP = True
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = False
    assert_envelope(put(api_client, registered, url), 400, "VALIDATION_ERROR")


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"url": 5}, {"url": None}, [], "x"])
def test_put_with_a_bad_body_is_400(api_client, registered, body):
    response = api_client.put(WEBHOOK, body, format="json", **registered.auth)
    assert_envelope(response, 400, "VALIDATION_ERROR")


@pytest.mark.django_db
def test_get_and_delete_without_an_endpoint_are_404(api_client, registered):
    assert_envelope(api_client.get(WEBHOOK, **registered.auth), 404, "NOT_FOUND")
    assert_envelope(api_client.delete(WEBHOOK, **registered.auth), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_delete_removes_the_endpoint(api_client, registered, receiver):
    put(api_client, registered, receiver.url)
    response = api_client.delete(WEBHOOK, **registered.auth)
    assert response.status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert_envelope(api_client.get(WEBHOOK, **registered.auth), 404, "NOT_FOUND")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_webhook_needs_a_key(api_client, method):
    assert_envelope(getattr(api_client, method)(WEBHOOK), 401, "INVALID_API_KEY")
    assert_envelope(api_client.get(DELIVERIES), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_one_agent_never_sees_anothers_endpoint(api_client, make_agent, receiver):
    owner, other = make_agent(), make_agent()
    put(api_client, owner, receiver.url)
    assert_envelope(api_client.get(WEBHOOK, **other.auth), 404, "NOT_FOUND")
    assert api_client.get(DELIVERIES, **other.auth).json() == {"deliveries": []}


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "post", "patch", "delete"])
def test_deliveries_answer_only_get(api_client, registered, method):
    response = getattr(api_client, method)(
        DELIVERIES, {"url": "https://example.com/"}, format="json", **registered.auth
    )
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "content_type", "status", "error_code"), NOT_A_JSON_OBJECT)
def test_delete_refuses_a_body_that_is_not_a_json_object(
    api_client, registered, receiver, body, content_type, status, error_code
):
    put(api_client, registered, receiver.url)
    response = api_client.generic(
        "DELETE", WEBHOOK, body, content_type=content_type, **registered.auth
    )
    assert_envelope(response, status, error_code)
    assert WebhookEndpoint.objects.filter(agent=registered.agent).exists()
    # An empty JSON object is no body at all.
    ok = api_client.generic(
        "DELETE", WEBHOOK, "{}", content_type="application/json", **registered.auth
    )
    assert ok.status_code == 204


@pytest.mark.django_db
def test_put_says_when_the_host_name_does_not_resolve(api_client, registered, monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    body = assert_envelope(
        put(api_client, registered, "https://hooks.example.invalid/x"), 400, "VALIDATION_ERROR"
    )
    assert body["details"]["url"] == [
        "The host name does not resolve: check it, or retry once it is published."
    ]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_put_answers_within_its_time_when_the_host_name_lookup_hangs(
    api_client, registered, monkeypatch, hanging_resolver
):
    monkeypatch.setattr(serializers, "LOOKUP_SECONDS", 0.5)
    started = time.monotonic()
    response = put(api_client, registered, "https://hooks.example/x")
    elapsed = time.monotonic() - started

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert body["details"]["url"] == [
        "The host name did not resolve within 0.5 s: retry once its DNS answers."
    ]
    assert elapsed < 1.5
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_put_accepts_an_internationalized_host_and_keeps_the_url_as_given(
    api_client, registered, monkeypatch
):
    resolved = []

    def public(host, port, *args, **kwargs):
        resolved.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    monkeypatch.setattr(socket, "getaddrinfo", public)
    response = put(api_client, registered, "https://bücher.example/hook")

    assert response.status_code == 200
    assert response.json()["url"] == "https://bücher.example/hook"
    assert resolved == ["xn--bcher-kva.example"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["https://☃.example/", "https://bü\u200dcher..example/"])
def test_put_refuses_a_host_that_is_no_valid_name(api_client, registered, url):
    body = assert_envelope(put(api_client, registered, url), 400, "VALIDATION_ERROR")
    assert body["details"]["url"] == ["Must name a valid host."]
    assert not WebhookEndpoint.objects.exists()
