import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.views import MeViewSet
from lithtrix import plain
from lithtrix.core.logs import JsonFormatter, scrub, scrub_with_every_pattern
from lithtrix.core.request_id import RequestIdLogFilter

CARD = "4242424242424242"
STRIPE_SECRET = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


@pytest.fixture
def log_lines():
    """Every log line the app writes during the test, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def access_lines(lines):
    return [line for line in lines if line["logger"] == "lithtrix.access"]


@pytest.mark.django_db
def test_every_request_gets_one_access_line_with_its_request_id(api_client, registered, log_lines):
    response = api_client.get("/v1/me", **registered.auth)
    missing = api_client.get("/v1/nope", HTTP_X_REQUEST_ID="caller-chosen-id.1")

    first, second = access_lines(log_lines())
    assert response.status_code == 200
    assert first["request_id"] == response["X-Request-Id"]
    assert first["method"] == "GET"
    assert first["path"] == "/v1/me"
    assert first["status"] == 200
    assert first["agent_id"] == str(registered.agent.id)
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["level"] == "INFO"
    assert missing["X-Request-Id"] == "caller-chosen-id.1"
    assert second["request_id"] == "caller-chosen-id.1"
    assert second["status"] == 404
    assert second["agent_id"] is None


@pytest.mark.django_db
def test_unsafe_caller_request_id_is_replaced(api_client, log_lines):
    response = api_client.get("/healthz", HTTP_X_REQUEST_ID='bad id"\n{')

    assert response["X-Request-Id"] != 'bad id"\n{'
    assert len(response["X-Request-Id"]) == 32
    (line,) = access_lines(log_lines())
    assert line["request_id"] == response["X-Request-Id"]


@pytest.mark.django_db
def test_logs_never_contain_keys_authorization_cards_or_secrets(api_client, monkeypatch, log_lines):
    registered = api_client.post(
        "/v1/register",
        {"agent_name": "logged", "owner_identifier": f"card {CARD}"},
        format="json",
    ).json()
    key = registered["api_key"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    api_client.get("/v1/me?api_key=" + key, **auth)
    rotated = api_client.post("/v1/keys/rotate", **auth).json()["api_key"]
    api_client.get("/v1/me", HTTP_AUTHORIZATION="Bearer ltx_not_a_real_key")

    def leak(request):
        # A bug that puts every secret it can reach into an exception message.
        raise RuntimeError(
            f"boom {request.META['HTTP_AUTHORIZATION']} {CARD} {STRIPE_SECRET} "
            "postgres://lithtrix:hunter2@db/lithtrix"
        )

    # In a DRF view (DELETE /v1/me) and in a plain one (GET /v1/me, lithtrix.plain).
    monkeypatch.setattr(MeViewSet, "destroy", lambda self, request: leak(request))
    monkeypatch.setattr(plain, "limit_agent", lambda request, **_: leak(request))
    crashed = [
        api_client.delete(
            "/v1/me", {"confirm": "logged"}, format="json", HTTP_AUTHORIZATION=f"Bearer {rotated}"
        ),
        api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {rotated}"),
    ]

    assert [response.status_code for response in crashed] == [500, 500]
    lines = log_lines()
    text = "\n".join(json.dumps(line) for line in lines)
    assert len([line for line in lines if line["level"] == "ERROR" and "exc" in line]) == 2
    assert len(access_lines(lines)) == 6
    for secret in (key, rotated, key[:20], rotated[:20], CARD, STRIPE_SECRET, "hunter2"):
        assert secret not in text
    assert "ltx_not_a_real_key" not in text
    assert "Bearer ltx" not in text
    assert "api_key=" not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("key ltx_abcDEF123", "key ltx_[redacted]"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
        ("Basic dXNlcjpwYXNz", "Basic [redacted]"),
        (f"stripe {STRIPE_SECRET}", "stripe sk_test_[redacted]"),
        ("whsec_abc123", "whsec_[redacted]"),
        ("card 4242 4242 4242 4242.", "card [card redacted]."),
        ("card 4000-0000-0000-0002", "card [card redacted]"),
        ("redis://:s3cret@cache:6379/0", "redis://:[redacted]@cache:6379/0"),
        # Not secrets: a failed Luhn check, a UUID, a timestamp, a count.
        ("order 4242424242424241", "order 4242424242424241"),
        (
            "agent 55058400-1234-1234-1234-446655440000",
            "agent 55058400-1234-1234-1234-446655440000",
        ),
        ("at 2026-11-25T22:00:00 calls 300", "at 2026-11-25T22:00:00 calls 300"),
    ],
    ids=[
        "api-key",
        "bearer",
        "basic",
        "stripe-secret",
        "webhook-secret",
        "card-spaced",
        "card-dashed",
        "url-password",
        "not-luhn",
        "uuid",
        "timestamp",
    ],
)
def test_scrub_redacts_secrets_and_keeps_the_rest(raw, expected):
    assert scrub(raw) == expected


# Pieces of secrets and their near misses, joined by anything.
_FRAGMENTS = st.sampled_from(
    [
        "ltx_", "ltx_a1", "LTX_", "Bearer ", "bEaReR\tx.y", "basic ", "TOKEN  ", "token:",
        "sk_test_", "sk_test_4eC3", "rk_live_", "rk_live_Zz9", "sk_Test_", "xsk_test_", "whsec_",
        "whsec_w1", "://", "://u:", "://u:pw@h", "@", "p@ss", " ",
        "-", "0", "4242", "4242 4242 4242 4242", "4000-0566-5566-5556", "4111111111111111",
        "1234567890123", "2026-12-06T01:22:33", "a", "Z", "_", "/",
        # Non-ASCII: long s and the Kelvin sign match s and k case-insensitively;
        # Arabic-Indic digits are \d.
        "\u017f", "\u212a", "\u00e9", "\u0664\u0662\u0664\u0662",
    ]
)  # fmt: skip


# ASCII filler: text with any other character takes scrub's path without clues.
_FILLER = st.text(st.characters(max_codepoint=127), max_size=6)


@settings(max_examples=400)
@given(st.lists(st.one_of(_FRAGMENTS, _FILLER), max_size=24).map("".join))
def test_scrub_clues_never_skip_a_secret(text):
    assert scrub(text) == scrub_with_every_pattern(text)


def test_json_formatter_emits_one_object_with_extras():
    record = logging.LogRecord("x.y", logging.WARNING, __file__, 1, "hello %s", ("ltx_abc",), None)
    record.request_id = "rid"
    record.status = 418

    line = json.loads(JsonFormatter().format(record))

    assert line["logger"] == "x.y"
    assert line["level"] == "WARNING"
    assert line["request_id"] == "rid"
    assert line["message"] == "hello ltx_[redacted]"
    assert line["status"] == 418
    assert set(line) == {"time", "level", "logger", "pid", "request_id", "message", "status"}
