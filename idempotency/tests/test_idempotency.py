"""Idempotency-Key on POST /v1/register, /v1/keys/*, /v1/billing/setup and DELETE /v1/me."""

import base64
import threading
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Agent
from idempotency import crypto
from idempotency.models import IdempotencyRecord
from idempotency.services import (
    LEGACY_NAMESPACE,
    Claimed,
    StoredAnswer,
    address_namespace,
    idempotency_claim,
    idempotency_complete,
)
from keys.crypto import generate_key
from keys.models import ApiKey
from testing.assertions import assert_envelope

REGISTER = "/v1/register"
ROTATE = "/v1/keys/rotate"
REVOKE = "/v1/keys/revoke"
ME = "/v1/me"
PAIR = {"agent_name": "retry-bot", "owner_identifier": "retry@example.com"}


def new_key() -> str:
    return str(uuid.uuid4())


def register(client, key, body=None, **extra):
    return client.post(REGISTER, body or PAIR, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


@pytest.mark.django_db
def test_register_retried_with_the_same_key_gets_the_same_answer_and_one_agent(api_client):
    key = new_key()
    first = register(api_client, key)
    second = register(api_client, key)

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second["Content-Type"] == "application/json"
    assert second.json() == first.json()
    assert Agent.objects.filter(agent_name="retry-bot").count() == 1
    # The replayed key works: the lost 201 is recovered.
    me = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {second.json()['api_key']}")
    assert me.status_code == 200


@pytest.mark.django_db
def test_register_without_a_key_is_not_idempotent(api_client):
    assert api_client.post(REGISTER, PAIR, format="json").status_code == 201
    assert_envelope(api_client.post(REGISTER, PAIR, format="json"), 409, "AGENT_ALREADY_EXISTS")
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_kept_error_answer_is_replayed_too(api_client):
    key = new_key()
    bad = {"agent_name": 42, "owner_identifier": "x"}
    first = register(api_client, key, bad)
    second = register(api_client, key, bad)
    assert_envelope(first, 400, "VALIDATION_ERROR")
    assert_envelope(second, 400, "VALIDATION_ERROR")
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


@pytest.mark.django_db
def test_same_key_with_another_body_is_422_and_runs_nothing(api_client):
    key = new_key()
    register(api_client, key)
    other = {"agent_name": "other-bot", "owner_identifier": "retry@example.com"}

    response = register(api_client, key, other)

    assert_envelope(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert "Idempotent-Replayed" not in response
    assert not Agent.objects.filter(agent_name="other-bot").exists()


@pytest.mark.django_db
def test_same_key_on_another_path_is_422(api_client, registered):
    key = new_key()
    overlap = {"previous_key_expires_in": 3600}  # the presented key keeps working
    rotated = api_client.post(
        ROTATE, overlap, format="json", HTTP_IDEMPOTENCY_KEY=key, **registered.auth
    )
    assert rotated.status_code == 200

    response = api_client.post(REVOKE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth)

    assert_envelope(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert api_client.get(ME, **registered.auth).status_code == 200  # nothing revoked


@pytest.mark.django_db
def test_same_key_with_another_key_of_the_same_agent_is_422_and_runs_nothing(
    api_client, registered
):
    key = new_key()
    first = api_client.post(
        ROTATE,
        {"previous_key_expires_in": 3600},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
        **registered.auth,
    )
    assert first.status_code == 200
    new_api_key = first.json()["api_key"]

    response = api_client.post(
        ROTATE,
        {"previous_key_expires_in": 3600},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
        HTTP_AUTHORIZATION=f"Bearer {new_api_key}",
    )

    assert_envelope(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert ApiKey.objects.filter(agent=registered.agent).count() == 2  # nothing rotated


@pytest.mark.parametrize(
    ("header", "path"),
    [
        pytest.param("", REGISTER, id="empty"),
        pytest.param("x" * 256, REGISTER, id="too-long"),
        pytest.param("a" * 31, REGISTER, id="register-under-32"),
        pytest.param("a" * 31, ROTATE, id="rotate-under-32"),
        pytest.param("café-" + "a" * 40, REGISTER, id="non-ascii"),
        pytest.param("tab\there" + "a" * 40, REGISTER, id="control-character"),
        pytest.param(" " + "a" * 40, REGISTER, id="leading-space"),
    ],
)
@pytest.mark.django_db
def test_malformed_key_is_400_naming_the_header_and_nothing_runs(
    api_client, registered, header, path
):
    response = api_client.post(
        path,
        PAIR if path == REGISTER else {},
        format="json",
        HTTP_IDEMPOTENCY_KEY=header,
        **registered.auth,
    )

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert list(body["details"]) == ["Idempotency-Key"]
    assert not Agent.objects.filter(agent_name="retry-bot").exists()
    assert ApiKey.objects.filter(agent=registered.agent).count() == 1
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_short_key_is_fine_where_no_api_key_is_answered(api_client, registered):
    response = api_client.post(REVOKE, HTTP_IDEMPOTENCY_KEY="k1", **registered.auth)
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_header_is_ignored_on_endpoints_that_are_not_idempotent(api_client, registered):
    response = api_client.get(ME, HTTP_IDEMPOTENCY_KEY="", **registered.auth)
    assert response.status_code == 200
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_after_the_ttl_the_same_key_runs_again(api_client, clock, settings):
    settings.LITHTRIX_IDEMPOTENCY_TTL_HOURS = 24
    key = new_key()
    assert register(api_client, key).status_code == 201

    clock.advance(hours=23, minutes=59)
    assert register(api_client, key)["Idempotent-Replayed"] == "true"

    clock.advance(minutes=2)
    response = register(api_client, key)
    # The request runs again: the pair now exists.
    assert_envelope(response, 409, "AGENT_ALREADY_EXISTS")
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db
def test_a_request_still_running_gets_409(api_client):
    key = new_key()
    # Another process holds the claim for exactly this request.
    request_body = b'{"agent_name":"retry-bot","owner_identifier":"retry@example.com"}'
    idempotency_claim(
        namespace=address_namespace("127.0.0.1"),
        idempotency_key=key,
        fingerprint=crypto.fingerprint(b"POST", REGISTER.encode(), b"", request_body),
    )

    response = api_client.post(
        REGISTER, request_body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )

    assert_envelope(response, 409, "IDEMPOTENCY_KEY_IN_USE")
    assert not Agent.objects.filter(agent_name="retry-bot").exists()


@pytest.mark.django_db
def test_a_claim_whose_request_died_is_taken_over(api_client, clock):
    key = new_key()
    request_body = b'{"agent_name":"retry-bot","owner_identifier":"retry@example.com"}'
    idempotency_claim(
        namespace=address_namespace("127.0.0.1"),
        idempotency_key=key,
        fingerprint=crypto.fingerprint(b"POST", REGISTER.encode(), b"", request_body),
    )
    clock.advance(minutes=3)

    response = api_client.post(
        REGISTER, request_body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 201


@pytest.mark.django_db
def test_5xx_answers_are_not_kept(api_client, monkeypatch):
    from accounts import views

    real = views.agent_register
    monkeypatch.setattr(views, "agent_register", lambda **kw: 1 / 0)
    key = new_key()
    assert_envelope(register(api_client, key), 500, "INTERNAL_ERROR")
    assert IdempotencyRecord.objects.count() == 0

    monkeypatch.setattr(views, "agent_register", real)
    response = register(api_client, key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db
def test_429_answers_are_not_kept(api_client, settings, throttle_rates):
    throttle_rates(register="1/m")
    key = new_key()
    register(api_client, new_key(), {"agent_name": "first", "owner_identifier": "o"})
    limited = register(api_client, key)
    assert_envelope(limited, 429, "RATE_LIMIT_EXCEEDED")
    # Only the first registration's answer is kept; the 429 left no record behind.
    assert IdempotencyRecord.objects.count() == 1
    assert not IdempotencyRecord.objects.filter(key_hash=crypto.key_hash(key)).exists()

    throttle_rates(register="10/m")
    response = register(api_client, key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db
def test_a_rotation_whose_answer_was_lost_is_replayed_though_the_old_key_is_dead(
    api_client, registered
):
    key = new_key()
    first = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth)
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")

    again = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth)

    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert ApiKey.objects.filter(agent=registered.agent).count() == 2


@pytest.mark.django_db
def test_a_deletion_retried_gets_204_again(api_client, registered):
    key = new_key()
    body = {"confirm": "my-agent"}
    first = api_client.delete(ME, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **registered.auth)
    again = api_client.delete(ME, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **registered.auth)

    assert first.status_code == again.status_code == 204
    assert again.content == b""
    assert again["Idempotent-Replayed"] == "true"
    assert "Content-Type" not in again


@pytest.mark.django_db
def test_the_table_and_the_server_secret_cannot_give_back_the_api_key(api_client, settings):
    key = new_key()
    api_key = register(api_client, key).json()["api_key"]

    record = IdempotencyRecord.objects.get()
    assert record.response is not None
    stored = b"".join(
        str(getattr(record, f.attname)).encode()
        if f.attname != "response"
        else bytes(record.response)
        for f in IdempotencyRecord._meta.concrete_fields
    )
    # Neither the Idempotency-Key nor the API key, in clear or base64, is in the row.
    for secret in (api_key, key):
        assert secret.encode() not in stored
        assert base64.b64encode(secret.encode()) not in stored
        assert base64.b64encode(secret.encode())[:20] not in stored
    assert record.key_hash != key and len(record.key_hash) == 64
    # The server secret with any other Idempotency-Key cannot open the answer...
    with pytest.raises(crypto.SealBroken):
        crypto.open_sealed(
            new_key(), bytes(record.response), associated_data=record.key_hash.encode()
        )
    # ...nor can a key derived from the server secret alone (no Idempotency-Key at all).
    with pytest.raises(crypto.SealBroken):
        crypto.open_sealed("", bytes(record.response), associated_data=record.key_hash.encode())
    # With the Idempotency-Key it opens: the sealing is what keeps it, not a lost copy.
    plaintext = crypto.open_sealed(
        key, bytes(record.response), associated_data=record.key_hash.encode()
    )
    assert api_key.encode() in base64.b64decode(__import__("json").loads(plaintext)["body"])
    # The key hash is keyed: the plain SHA-256 of the Idempotency-Key is not it.
    digest = hmac.HMAC(b"", hashes.SHA256())
    digest.update(key.encode())
    assert record.key_hash not in {digest.finalize().hex()}


@pytest.mark.django_db
def test_purge_deletes_only_expired_records(api_client, clock, capsys):
    register(api_client, new_key())
    clock.advance(hours=25)
    later = {"agent_name": "later", "owner_identifier": "o"}
    register(api_client, new_key(), later, REMOTE_ADDR="198.51.100.9")

    call_command("idempotency_purge")

    assert IdempotencyRecord.objects.count() == 1
    assert "Deleted 1 expired" in capsys.readouterr().out


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_identical_requests_at_once_run_once():
    threads_count = 6
    key = new_key()
    barrier = threading.Barrier(threads_count)
    results: list[tuple[int, dict, str | None]] = []
    lock = threading.Lock()

    def send() -> None:
        client = APIClient()
        barrier.wait()
        try:
            response = client.post(REGISTER, PAIR, format="json", HTTP_IDEMPOTENCY_KEY=key)
            with lock:
                results.append(
                    (response.status_code, response.json(), response.get("Idempotent-Replayed"))
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Agent.objects.filter(agent_name="retry-bot").count() == 1
    assert ApiKey.objects.count() == 1
    ran = [body for status, body, replayed in results if status == 201 and replayed is None]
    assert len(ran) == 1
    for status, body, _replayed in results:
        if status == 201:
            assert body == ran[0]
        else:
            assert (status, body["error_code"]) == (409, "IDEMPOTENCY_KEY_IN_USE")


# --- whose key is it: one caller's Idempotency-Key never binds another's ----------


@pytest.mark.django_db
def test_requests_that_fail_authentication_leave_no_record(api_client, registered):
    unknown = f"Bearer {generate_key().key}"
    for n in range(20):
        headers = {"HTTP_AUTHORIZATION": unknown} if n % 2 else {}
        response = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=new_key(), **headers)
        assert_envelope(response, 401, "INVALID_API_KEY")
        assert response["WWW-Authenticate"] == "Bearer"
        assert "Idempotent-Replayed" not in response

    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_strangers_use_of_a_key_does_not_bind_the_agents_request(api_client, registered):
    key = new_key()
    stranger = api_client.post(
        ROTATE, HTTP_IDEMPOTENCY_KEY=key, HTTP_AUTHORIZATION=f"Bearer {generate_key().key}"
    )
    assert_envelope(stranger, 401, "INVALID_API_KEY")

    response = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth)

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response
    me = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {response.json()['api_key']}")
    assert me.json()["agent_id"] == str(registered.agent.id)


@pytest.mark.django_db
def test_a_dead_key_of_the_agent_cannot_bind_a_key_either(api_client, registered):
    rotated = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=new_key(), **registered.auth)
    current = {"HTTP_AUTHORIZATION": f"Bearer {rotated.json()['api_key']}"}
    key = new_key()

    # Whoever still holds the rotated-away key...
    stale = api_client.post(REVOKE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth)
    assert_envelope(stale, 401, "INVALID_API_KEY")
    # ...leaves nothing the agent's own request with that Idempotency-Key runs into.
    response = api_client.post(REVOKE, HTTP_IDEMPOTENCY_KEY=key, **current)

    assert response.status_code == 200
    assert response.json() == {"revoked": rotated.json()["api_key"][:12]}
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db
def test_two_agents_may_use_the_same_key_each_for_its_own_request(api_client, make_agent):
    alice, bob = make_agent(name="alice"), make_agent(name="bob")
    key = new_key()
    for_alice = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **alice.auth)

    for_bob = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **bob.auth)

    assert for_alice.status_code == for_bob.status_code == 200
    assert "Idempotent-Replayed" not in for_bob
    assert for_bob.json()["api_key"] != for_alice.json()["api_key"]
    me = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {for_bob.json()['api_key']}")
    assert me.json()["agent_id"] == str(bob.agent.id)
    assert ApiKey.objects.filter(agent=bob.agent).count() == 2
    # Each agent's retry still gets its own first answer.
    again = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **alice.auth)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == for_alice.json()


@pytest.mark.django_db
def test_two_addresses_may_register_with_the_same_key(api_client):
    key = new_key()
    first = register(api_client, key, REMOTE_ADDR="198.51.100.1")
    other = {"agent_name": "other-bot", "owner_identifier": "other@example.com"}

    second = register(api_client, key, other, REMOTE_ADDR="198.51.100.2")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert Agent.objects.filter(agent_name="other-bot").count() == 1
    assert register(api_client, key, REMOTE_ADDR="198.51.100.1").json() == first.json()


@pytest.mark.django_db
def test_a_401_from_a_request_that_authenticated_is_not_kept(api_client, registered, monkeypatch):
    from keys import views

    key = new_key()
    # The key stops working while the revocation runs (a concurrent revocation).
    monkeypatch.setattr(views, "api_key_revoke_working", lambda **kwargs: False)
    assert_envelope(
        api_client.post(REVOKE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth), 401, "INVALID_API_KEY"
    )
    assert IdempotencyRecord.objects.count() == 0

    monkeypatch.undo()
    response = api_client.post(REVOKE, HTTP_IDEMPOTENCY_KEY=key, **registered.auth)
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db
def test_a_record_from_before_namespaces_answers_only_its_own_request(api_client, make_agent):
    alice, bob = make_agent(name="alice"), make_agent(name="bob")
    key = new_key()
    # As migration 0002 leaves a record stored before namespaces: alice's rotation.
    claim = idempotency_claim(
        namespace=LEGACY_NAMESPACE,
        idempotency_key=key,
        fingerprint=crypto.fingerprint(
            b"POST", ROTATE.encode(), alice.auth["HTTP_AUTHORIZATION"].encode(), b""
        ),
    )
    assert isinstance(claim, Claimed)
    idempotency_complete(
        record=claim.record,
        idempotency_key=key,
        answer=StoredAnswer(
            status=200, body=b'{"kept": true}', headers={"Content-Type": "application/json"}
        ),
    )

    for_bob = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **bob.auth)
    for_alice = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **alice.auth)

    assert for_bob.status_code == 200
    assert "Idempotent-Replayed" not in for_bob
    assert for_alice["Idempotent-Replayed"] == "true"
    assert for_alice.json() == {"kept": True}
    assert ApiKey.objects.filter(agent=alice.agent).count() == 1  # nothing ran again


@pytest.mark.django_db
def test_an_agent_holds_at_most_the_bound_of_keys(api_client, registered, clock, settings):
    settings.LITHTRIX_IDEMPOTENCY_MAX_KEYS = 3
    settings.LITHTRIX_IDEMPOTENCY_TTL_HOURS = 24
    auth = registered.auth
    kept = []
    for _ in range(3):
        kept.append(key := new_key())
        response = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=key, **auth)
        assert response.status_code == 200
        auth = {"HTTP_AUTHORIZATION": f"Bearer {response.json()['api_key']}"}
        clock.advance(hours=1)

    refused = api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=new_key(), **auth)

    body = assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert "Idempotency-Key" in body["message"]
    # The oldest kept answer expires 24 h after it was stored, 3 h ago.
    assert refused["Retry-After"] == str(21 * 3600)
    # The limit that refused, not the agent's per-minute rate.
    assert (refused["RateLimit-Limit"], refused["RateLimit-Remaining"]) == ("3", "0")
    assert refused["RateLimit-Reset"] == str(21 * 3600)
    assert ApiKey.objects.filter(agent=registered.agent).count() == 4  # nothing rotated
    assert IdempotencyRecord.objects.count() == 3
    # Within the bound, retries are still answered...
    assert (
        api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=kept[0], **registered.auth)[
            "Idempotent-Replayed"
        ]
        == "true"
    )
    # ...a request without a key still runs...
    assert api_client.get(ME, **auth).status_code == 200
    # ...and once the oldest answer expires, a new key is taken.
    clock.advance(hours=21)
    assert api_client.post(ROTATE, HTTP_IDEMPOTENCY_KEY=new_key(), **auth).status_code == 200


@pytest.mark.django_db
def test_an_address_holds_at_most_the_bound_of_keys_for_register(
    api_client, settings, throttle_rates
):
    settings.LITHTRIX_IDEMPOTENCY_MAX_KEYS = 2
    throttle_rates(register="100/m")
    for n in range(2):
        pair = {"agent_name": f"bot-{n}", "owner_identifier": "o"}
        assert register(api_client, new_key(), pair, REMOTE_ADDR="198.51.100.1").status_code == 201

    refused = register(api_client, new_key(), REMOTE_ADDR="198.51.100.1")

    assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert int(refused["Retry-After"]) >= 1
    assert not Agent.objects.filter(agent_name="retry-bot").exists()
    # Another address has its own bound.
    assert register(api_client, new_key(), REMOTE_ADDR="198.51.100.2").status_code == 201
    assert IdempotencyRecord.objects.count() == 3


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_keys_claimed_at_once_never_exceed_the_bound(settings, throttle_rates):
    settings.LITHTRIX_IDEMPOTENCY_MAX_KEYS = 3
    throttle_rates(register="100/m")
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        client = APIClient()
        barrier.wait()
        try:
            pair = {"agent_name": f"bot-{n}", "owner_identifier": "o"}
            response = register(client, new_key(), pair)
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert IdempotencyRecord.objects.count() == 3
    assert Agent.objects.count() == 3
