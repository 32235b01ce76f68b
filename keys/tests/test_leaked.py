"""POST /v1/keys/leaked: GitHub's secret-scanning partner protocol."""

import base64
import hashlib
import json
import socket

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from events.models import Event
from keys import secret_scanning
from keys.crypto import generate_key
from keys.models import ApiKey, KeyEvent
from lithtrix.core.parsers import MAX_JSON_DEPTH
from testing.assertions import assert_envelope
from testing.jobs import queued_dispatches

LEAKED = "/v1/keys/leaked"
ME = "/v1/me"
KEY_ID = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"


def pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def github_key(tmp_path, settings):
    """A P-256 key pair standing for GitHub's, its public half in the keys file."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    keys_file = tmp_path / "secret_scanning.json"
    keys_file.write_text(
        json.dumps(
            {
                "public_keys": [
                    {"key_identifier": "old-one", "key": pem(other), "is_current": False},
                    {"key_identifier": KEY_ID, "key": pem(private_key), "is_current": True},
                ]
            }
        )
    )
    settings.LITHTRIX_SECRET_SCANNING_KEYS_FILE = str(keys_file)
    secret_scanning._cache.clear()
    yield private_key
    secret_scanning._cache.clear()


def signed(private_key, body: bytes, key_id: str = KEY_ID) -> dict[str, str]:
    signature = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    return {
        "HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": key_id,
        "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": base64.b64encode(signature).decode(),
    }


def report(*tokens: str) -> bytes:
    return json.dumps(
        [
            {
                "token": token,
                "type": "lithtrix_api_key",
                "url": f"https://github.com/octo/repo/blob/abc/config.py#L{n}",
                "source": "content",
            }
            for n, token in enumerate(tokens)
        ]
    ).encode()


def post(client, body: bytes, headers: dict):
    return client.post(LEAKED, body, content_type="application/json", **headers)


@pytest.mark.django_db
def test_a_reported_live_key_is_revoked_and_labelled(api_client, registered, github_key):
    unknown = generate_key().key
    body = report(registered.api_key, unknown, "not-a-key")

    response = post(api_client, body, signed(github_key, body))

    assert response.status_code == 200
    assert response.json() == [
        {
            "token_hash": hashlib.sha256(token.encode()).hexdigest(),
            "token_type": "lithtrix_api_key",
            "label": label,
        }
        for token, label in [
            (registered.api_key, "true_positive"),
            (unknown, "false_positive"),
            ("not-a-key", "false_positive"),
        ]
    ]
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    event = KeyEvent.objects.get(agent=registered.agent, kind="revoked")
    assert "https://github.com/octo/repo/blob/abc/config.py#L0" in event.reason
    assert registered.api_key not in response.content.decode()


@pytest.mark.django_db
def test_a_key_already_revoked_is_a_true_positive_and_revoked_once(
    api_client, registered, github_key
):
    body = report(registered.api_key)
    post(api_client, body, signed(github_key, body))
    again = post(api_client, body, signed(github_key, body))

    assert again.json()[0]["label"] == "true_positive"
    assert KeyEvent.objects.filter(agent=registered.agent, kind="revoked").count() == 1


@pytest.mark.parametrize(
    "tamper",
    [
        "missing-signature",
        "missing-identifier",
        "not-base64",
        "other-body",
        "unknown-id",
        "other-key",
    ],
)
@pytest.mark.django_db
def test_a_bad_signature_is_400_and_revokes_nothing(api_client, registered, github_key, tamper):
    body = report(registered.api_key)
    headers = signed(github_key, body)
    if tamper == "missing-signature":
        del headers["HTTP_GITHUB_PUBLIC_KEY_SIGNATURE"]
    elif tamper == "missing-identifier":
        del headers["HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER"]
    elif tamper == "not-base64":
        headers["HTTP_GITHUB_PUBLIC_KEY_SIGNATURE"] = "%%%"
    elif tamper == "other-body":
        headers = signed(github_key, report("ltx_other"))
    elif tamper == "unknown-id":
        headers = signed(github_key, body, key_id="nobody")
    elif tamper == "other-key":
        headers = signed(github_key, body, key_id="old-one")

    response = post(api_client, body, headers)

    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is None
    assert api_client.get(ME, **registered.auth).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"{}", b'[{"token": 1, "type": "t", "url": "u", "source": "s"}]', b"[{}]", b"not json"],
    ids=["object", "token-not-string", "fields-missing", "not-json"],
)
@pytest.mark.django_db
def test_a_signed_but_malformed_report_is_400(api_client, github_key, body):
    assert_envelope(post(api_client, body, signed(github_key, body)), 400, "VALIDATION_ERROR")


@pytest.mark.django_db
def test_an_unknown_identifier_refreshes_the_keys_at_most_once_per_interval(
    api_client, github_key, monkeypatch
):
    loads = []
    real = secret_scanning._load_document

    def counted_load():
        loads.append(1)
        return real()

    monkeypatch.setattr(secret_scanning, "_load_document", counted_load)
    body = report("x")

    for _ in range(5):
        post(api_client, body, signed(github_key, body, key_id="nobody"))

    assert len(loads) == 1


@pytest.mark.django_db
def test_keys_come_from_the_url_when_no_file_is_set(api_client, registered, settings):
    """The URL is fetched (here a loopback server standing for GitHub's API)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    private_key = ec.generate_private_key(ec.SECP256R1())
    document = json.dumps(
        {"public_keys": [{"key_identifier": KEY_ID, "key": pem(private_key), "is_current": True}]}
    ).encode()

    class GitHubMeta(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubMeta)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.LITHTRIX_SECRET_SCANNING_KEYS_FILE = ""
    settings.LITHTRIX_SECRET_SCANNING_KEYS_URL = f"http://127.0.0.1:{server.server_port}/keys"
    secret_scanning._cache.clear()
    try:
        body = report(registered.api_key)
        response = post(api_client, body, signed(private_key, body))
    finally:
        server.shutdown()
        server.server_close()
        secret_scanning._cache.clear()

    assert response.status_code == 200
    assert response.json()[0]["label"] == "true_positive"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_keys_source_unreachable_is_503(api_client, registered, settings, closed_port):
    settings.LITHTRIX_SECRET_SCANNING_KEYS_FILE = ""
    settings.LITHTRIX_SECRET_SCANNING_KEYS_URL = f"http://127.0.0.1:{closed_port}/keys"
    secret_scanning._cache.clear()
    private_key = ec.generate_private_key(ec.SECP256R1())
    body = report(registered.api_key)
    try:
        response = post(api_client, body, signed(private_key, body))
    finally:
        secret_scanning._cache.clear()

    assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == "60"
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is None


@pytest.mark.django_db
def test_leaked_has_its_own_rate_limit_per_ip(
    api_client, github_key, settings, ratelimit_clock, throttle_rates
):
    # A frozen rate-limit clock: the window must not roll over between the requests.
    throttle_rates(secret_scanning="2/m")
    body = report("x")
    statuses = [post(api_client, body, signed(github_key, body)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = post(api_client, body, signed(github_key, body))
    assert_envelope(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert int(limited["Retry-After"]) >= 1
    # Registration's per-IP limit is separate: scanners do not use it up.
    assert (
        api_client.post(
            "/v1/register", {"agent_name": "a", "owner_identifier": "o"}, format="json"
        ).status_code
        == 201
    )


@pytest.mark.django_db
def test_a_signed_report_nested_too_deep_is_400(api_client, registered, github_key):
    body = b"[" * 5000 + b"]" * 5000

    response = post(api_client, body, signed(github_key, body))

    payload = assert_envelope(response, 400, "VALIDATION_ERROR")
    expected = f"Arrays and objects nest at most {MAX_JSON_DEPTH} deep."
    assert payload["details"] == {"body": [expected]}
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is None


# GitHub's signed sample alert, from its partner-program documentation: its key
# identifier, public key, body and signature, byte for byte.
SAMPLE_KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
SAMPLE_PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\n"
    "kCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n"
    "-----END PUBLIC KEY-----\n"
)
SAMPLE_BODY = b'[{"token":"some_token","type":"some_type","url":"some_url"}]'
SAMPLE_SIGNATURE = (
    "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIg"
    "QY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc="
)


@pytest.mark.django_db
def test_githubs_own_signed_sample_is_verified_and_answered(api_client, tmp_path, settings):
    keys_file = tmp_path / "secret_scanning.json"
    keys_file.write_text(
        json.dumps(
            {
                "public_keys": [
                    {"key_identifier": SAMPLE_KEY_ID, "key": SAMPLE_PUBLIC_KEY, "is_current": True}
                ]
            }
        )
    )
    settings.LITHTRIX_SECRET_SCANNING_KEYS_FILE = str(keys_file)
    secret_scanning._cache.clear()

    response = post(
        api_client,
        SAMPLE_BODY,
        {
            "HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": SAMPLE_KEY_ID,
            "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": SAMPLE_SIGNATURE,
        },
    )
    secret_scanning._cache.clear()

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == [
        {
            "token_hash": hashlib.sha256(b"some_token").hexdigest(),
            "token_type": "some_type",
            "label": "false_positive",
        }
    ]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "lithtrix_api_key"},
        {"type": "lithtrix_api_key", "url": "https://github.com/octo/repo/blob/abc/a.py"},
        {"type": "lithtrix_api_key", "source": "content", "commit": "abc", "unknown": [1]},
    ],
    ids=["token-and-type-only", "no-source", "unknown-fields"],
)
@pytest.mark.django_db
def test_a_report_with_only_the_required_fields_revokes_the_key(
    api_client, registered, github_key, item
):
    body = json.dumps([{"token": registered.api_key, **item}]).encode()

    response = post(api_client, body, signed(github_key, body))

    assert response.status_code == 200, response.content
    assert response.json() == [
        {
            "token_hash": hashlib.sha256(registered.api_key.encode()).hexdigest(),
            "token_type": "lithtrix_api_key",
            "label": "true_positive",
        }
    ]
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is not None
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    event = KeyEvent.objects.get(agent=registered.agent, kind="revoked")
    assert event.reason.startswith("Reported leaked by secret scanning")
    assert item.get("url", "") in event.reason


@pytest.mark.django_db
def test_a_revoked_leaked_key_is_told_to_its_owner_once(api_client, registered, github_key):
    body = report(registered.api_key)

    post(api_client, body, signed(github_key, body))
    post(api_client, body, signed(github_key, body))

    [event] = Event.objects.filter(agent=registered.agent)
    assert (event.type, event.data) == (
        "key.leaked",
        {
            "prefix": registered.api_key[:12],
            "url": "https://github.com/octo/repo/blob/abc/config.py#L0",
            "source": "content",
        },
    )
    assert queued_dispatches() == [event.id]
