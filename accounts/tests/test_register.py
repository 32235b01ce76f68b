import logging

import pytest

from accounts.models import Agent, AgentEvent
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey, KeyEvent
from testing.assertions import assert_envelope

REGISTER = "/v1/register"


def post_json(client, path, body, **extra):
    return client.post(path, body, format="json", **extra)


@pytest.mark.django_db
def test_register_returns_key_once_and_stores_only_its_hash(api_client, caplog):
    caplog.set_level(logging.DEBUG)
    response = post_json(
        api_client,
        REGISTER,
        {"agent_name": "my-agent", "owner_identifier": "you@example.com", "agree_to_terms": True},
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"api_key", "agent_id", "message"}
    assert body["message"] == "Store this key securely. It cannot be retrieved again."
    key = body["api_key"]
    assert key.startswith("ltx_") and is_well_formed(key)

    agent = Agent.objects.get(pk=body["agent_id"])
    assert (agent.agent_name, agent.owner_identifier, agent.tier) == (
        "my-agent",
        "you@example.com",
        "free",
    )
    assert agent.calls_total == 0
    stored = ApiKey.objects.get(agent=agent)
    assert stored.hashed_key == hash_key(key)
    assert stored.prefix == key[:12]
    # The key in clear is nowhere but the response body.
    for row in ApiKey.objects.values_list():
        assert key not in str(row)
    assert key not in caplog.text
    assert KeyEvent.objects.filter(agent=agent, kind="issued").count() == 1
    assert AgentEvent.objects.filter(agent=agent, kind="registered").count() == 1


@pytest.mark.django_db
def test_register_same_pair_twice_is_conflict(api_client):
    payload = {"agent_name": "dup", "owner_identifier": "o@example.com"}
    assert post_json(api_client, REGISTER, payload).status_code == 201

    body = assert_envelope(post_json(api_client, REGISTER, payload), 409, "AGENT_ALREADY_EXISTS")

    assert "details" not in body
    # Rotation needs the very key that was lost: the message names the ways back.
    assert "rotat" not in body["message"]
    assert "Idempotency-Key" in body["message"]
    assert "support" in body["message"]
    assert Agent.objects.count() == 1
    assert ApiKey.objects.count() == 1


@pytest.mark.django_db
def test_same_name_different_owner_is_a_new_agent(api_client):
    first = post_json(api_client, REGISTER, {"agent_name": "a", "owner_identifier": "x"})
    second = post_json(api_client, REGISTER, {"agent_name": "a", "owner_identifier": "y"})
    assert first.status_code == second.status_code == 201
    assert first.json()["agent_id"] != second.json()["agent_id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "a"}, "owner_identifier"),
        ({"agent_name": "", "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "a", "owner_identifier": ""}, "owner_identifier"),
        ({"agent_name": "a", "owner_identifier": "   "}, "owner_identifier"),
        ({"agent_name": 42, "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "a", "owner_identifier": 42}, "owner_identifier"),
        ({"agent_name": None, "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": ["a"], "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": True, "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": {"x": 1}, "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "a" * 101, "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "a", "owner_identifier": "o" * 256}, "owner_identifier"),
        ({"agent_name": "has space", "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "semi;colon", "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "trailing\n", "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "ünïcode", "owner_identifier": "o"}, "agent_name"),
        ({"agent_name": "a", "owner_identifier": "nul\x00byte"}, "owner_identifier"),
    ],
    ids=[
        "missing-name",
        "missing-owner",
        "empty-name",
        "empty-owner",
        "blank-owner",
        "number-name",
        "number-owner",
        "null-name",
        "list-name",
        "bool-name",
        "object-name",
        "name-too-long",
        "owner-too-long",
        "name-space",
        "name-punctuation",
        "name-newline",
        "name-unicode",
        "owner-nul",
    ],
)
def test_register_invalid_field_is_validation_error(api_client, payload, field):
    body = assert_envelope(post_json(api_client, REGISTER, payload), 400, "VALIDATION_ERROR")

    assert field in body["details"]
    assert all(isinstance(m, str) for m in body["details"][field])
    assert Agent.objects.count() == 0


@pytest.mark.django_db
def test_register_accepts_boundary_lengths(api_client):
    response = post_json(
        api_client, REGISTER, {"agent_name": "A_z-9" + "x" * 95, "owner_identifier": "o" * 255}
    )
    assert response.status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"agent_name": "a",', "application/json", 400, "VALIDATION_ERROR"),
        (b"[1, 2]", "application/json", 400, "VALIDATION_ERROR"),
        (b'"just a string"', "application/json", 400, "VALIDATION_ERROR"),
        (
            b'{"agent_name": NaN, "owner_identifier": "o"}',
            "application/json",
            400,
            "VALIDATION_ERROR",
        ),
        (b"\xff\xfe", "application/json", 400, "VALIDATION_ERROR"),
        (
            b"agent_name=a&owner_identifier=o",
            "application/x-www-form-urlencoded",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (b"hello", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
    ids=["truncated", "list", "string", "nan", "not-utf8", "form", "text"],
)
def test_register_bad_body(api_client, body, content_type, status, code):
    response = api_client.generic("POST", REGISTER, body, content_type=content_type)
    assert_envelope(response, status, code)
    assert Agent.objects.count() == 0


@pytest.mark.django_db
def test_register_oversized_body_is_413(api_client, settings):
    settings.LITHTRIX_MAX_BODY_BYTES = 1024
    payload = b'{"agent_name": "a", "owner_identifier": "' + b"o" * 2000 + b'"}'
    response = api_client.generic("POST", REGISTER, payload, content_type="application/json")
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert Agent.objects.count() == 0


@pytest.mark.django_db
def test_register_wrong_method_is_405(api_client):
    response = api_client.get(REGISTER)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response["Allow"]


@pytest.mark.django_db
def test_register_needs_no_key_and_ignores_a_bad_one(api_client):
    response = post_json(
        api_client,
        REGISTER,
        {"agent_name": "a", "owner_identifier": "o"},
        HTTP_AUTHORIZATION="Bearer nonsense",
    )
    assert response.status_code == 201
