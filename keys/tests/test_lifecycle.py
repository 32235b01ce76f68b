"""Rotation with an overlap, GET /v1/keys and POST /v1/keys/revoke."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from keys.crypto import hash_key
from keys.models import ApiKey, KeyEvent
from keys.selectors import working_keys_condition
from testing.assertions import NOT_A_JSON_OBJECT, assert_envelope

ROTATE = "/v1/keys/rotate"
KEYS = "/v1/keys"
REVOKE = "/v1/keys/revoke"
ME = "/v1/me"


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.mark.django_db
def test_rotate_with_overlap_keeps_the_old_key_until_it_expires(api_client, registered, clock):
    response = api_client.post(
        ROTATE, {"previous_key_expires_in": 3600}, format="json", **registered.auth
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"api_key", "previous_key_expires_at", "overlap_ended"}
    assert body["overlap_ended"] == []
    expires_at = parse_datetime(body["previous_key_expires_at"])
    assert expires_at == clock.now + dt.timedelta(seconds=3600)
    old = ApiKey.objects.get(
        agent=registered.agent, hashed_key__isnull=False, expires_at__isnull=False
    )
    assert old.revoked_at is None and old.expires_at == expires_at
    assert api_client.get(ME, **registered.auth).status_code == 200
    assert api_client.get(ME, **bearer(body["api_key"])).status_code == 200

    clock.advance(seconds=3599)
    assert api_client.get(ME, **registered.auth).status_code == 200
    clock.advance(seconds=1)
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    assert api_client.get(ME, **bearer(body["api_key"])).status_code == 200
    event = KeyEvent.objects.get(api_key=old, kind="rotated")
    assert expires_at.isoformat() in event.reason


@pytest.mark.parametrize("overlap", [0, None], ids=["zero", "absent"])
@pytest.mark.django_db
def test_rotate_without_overlap_kills_the_old_key_at_once(api_client, registered, overlap):
    data = {} if overlap is None else {"previous_key_expires_in": overlap}
    response = api_client.post(ROTATE, data, format="json", **registered.auth)

    assert response.status_code == 200
    assert response.json()["previous_key_expires_at"] is None
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_rotate_with_the_maximum_overlap_of_seven_days(api_client, registered, clock):
    response = api_client.post(
        ROTATE, {"previous_key_expires_in": 604800}, format="json", **registered.auth
    )
    assert response.status_code == 200
    assert parse_datetime(response.json()["previous_key_expires_at"]) == clock.now + dt.timedelta(
        days=7
    )


@pytest.mark.parametrize(
    "value",
    [-1, 604801, "60", 60.0, 1.5, True, False, None, [60], {"s": 60}],
    ids=[
        "negative",
        "over-7-days",
        "string",
        "float",
        "fraction",
        "true",
        "false",
        "null",
        "list",
        "object",
    ],
)
@pytest.mark.django_db
def test_rotate_with_a_bad_overlap_is_400_and_changes_nothing(api_client, registered, value):
    response = api_client.post(
        ROTATE, {"previous_key_expires_in": value}, format="json", **registered.auth
    )

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert list(body["details"]) == ["previous_key_expires_in"]
    key = ApiKey.objects.get(agent=registered.agent)
    assert key.revoked_at is None and key.expires_at is None
    assert not KeyEvent.objects.filter(kind="rotated").exists()


@pytest.mark.django_db
def test_a_key_in_its_overlap_window_cannot_rotate(api_client, registered):
    api_client.post(ROTATE, {"previous_key_expires_in": 600}, format="json", **registered.auth)

    response = api_client.post(ROTATE, **registered.auth)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == "Bearer"
    assert ApiKey.objects.filter(agent=registered.agent).count() == 2
    # ...but it still authenticates elsewhere.
    assert api_client.get(ME, **registered.auth).status_code == 200


@pytest.mark.django_db
def test_keys_lists_the_working_keys_newest_first(api_client, registered, clock):
    first = api_client.post(
        ROTATE, {"previous_key_expires_in": 600}, format="json", **registered.auth
    ).json()
    clock.advance(seconds=1)
    second = api_client.post(
        ROTATE, {"previous_key_expires_in": 60}, format="json", **bearer(first["api_key"])
    ).json()

    response = api_client.get(KEYS, **bearer(second["api_key"]))

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [set(k) for k in keys] == [{"prefix", "created_at", "expires_at", "current"}] * 3
    assert [k["current"] for k in keys] == [True, False, False]
    assert second["api_key"].startswith(keys[0]["prefix"])
    assert first["api_key"].startswith(keys[1]["prefix"])
    assert registered.api_key.startswith(keys[2]["prefix"])
    assert keys[0]["expires_at"] is None
    assert parse_datetime(keys[1]["expires_at"]) == parse_datetime(
        second["previous_key_expires_at"]
    )
    assert "hashed_key" not in response.content.decode()
    for key in ApiKey.objects.all():
        assert key.hashed_key not in response.content.decode()

    clock.advance(seconds=61)
    keys = api_client.get(KEYS, **bearer(second["api_key"])).json()["keys"]
    assert len(keys) == 2  # the 60 s overlap ended


@pytest.mark.django_db
def test_keys_without_a_key_is_401(api_client):
    assert_envelope(api_client.get(KEYS), 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_revoke_kills_the_presented_key_at_once(api_client, registered):
    prefix = ApiKey.objects.get(agent=registered.agent).prefix
    response = api_client.post(REVOKE, REMOTE_ADDR="203.0.113.9", **registered.auth)

    assert response.status_code == 200
    assert response.json() == {"revoked": prefix}
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    assert_envelope(api_client.post(REVOKE, **registered.auth), 401, "INVALID_API_KEY")
    key = ApiKey.objects.get(agent=registered.agent)
    assert key.revoked_at is not None
    event = KeyEvent.objects.get(api_key=key, kind="revoked")
    assert event.ip == "203.0.113.9" and event.actor is None


@pytest.mark.django_db
def test_revoke_an_overlapping_key_leaves_the_new_one_working(api_client, registered):
    new = api_client.post(
        ROTATE, {"previous_key_expires_in": 600}, format="json", **registered.auth
    ).json()["api_key"]

    assert api_client.post(REVOKE, **registered.auth).status_code == 200

    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    assert api_client.get(ME, **bearer(new)).status_code == 200
    keys = api_client.get(KEYS, **bearer(new)).json()["keys"]
    assert [k["current"] for k in keys] == [True]


@pytest.mark.django_db
def test_an_expired_overlap_key_is_refused_by_the_single_query(
    api_client, registered, django_assert_num_queries
):
    ApiKey.objects.filter(agent=registered.agent).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    with django_assert_num_queries(1):
        response = api_client.get(ME, **registered.auth)
    assert_envelope(response, 401, "INVALID_API_KEY")


# --- at most LITHTRIX_MAX_WORKING_KEYS keys of one agent work at once -------------

WEEK = {"previous_key_expires_in": 7 * 24 * 3600}


def rotate_with_overlap(api_client, key: str) -> dict:
    response = api_client.post(ROTATE, WEEK, format="json", **bearer(key))
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_rotations_beyond_the_bound_end_the_oldest_overlap_first(api_client, registered, settings):
    settings.LITHTRIX_MAX_WORKING_KEYS = 3
    keys = [registered.api_key]
    answers = []
    for _ in range(4):
        answers.append(rotate_with_overlap(api_client, keys[-1]))
        keys.append(answers[-1]["api_key"])

    # Within the bound nothing ends; past it, one rotation ends one overlap, oldest first.
    assert [answer["overlap_ended"] for answer in answers[:2]] == [[], []]
    assert [[ended["prefix"] for ended in answer["overlap_ended"]] for answer in answers[2:]] == [
        [keys[0][:12]],
        [keys[1][:12]],
    ]
    first = ApiKey.objects.get(hashed_key=hash_key(keys[0]))
    assert answers[2]["overlap_ended"] == [
        {"prefix": keys[0][:12], "created_at": first.created_at.isoformat().replace("+00:00", "Z")}
    ]
    for key in keys[:2]:
        assert_envelope(api_client.get(ME, **bearer(key)), 401, "INVALID_API_KEY")
    for key in keys[2:]:
        assert api_client.get(ME, **bearer(key)).status_code == 200
    listed = api_client.get(KEYS, **bearer(keys[-1])).json()["keys"]
    assert [key["prefix"] for key in listed] == [key[:12] for key in reversed(keys[2:])]
    # Each ended overlap has its audit row, written with the rotation that ended it.
    ended = KeyEvent.objects.filter(agent=registered.agent, kind="revoked").order_by("id")
    assert [event.api_key.prefix for event in ended] == [keys[0][:12], keys[1][:12]]
    assert all("LITHTRIX_MAX_WORKING_KEYS" not in e.reason and e.reason for e in ended)


@pytest.mark.django_db
def test_forty_rotations_with_a_week_of_overlap_leave_the_default_five_working(
    api_client, registered
):
    key = registered.api_key
    for _ in range(40):
        key = rotate_with_overlap(api_client, key)["api_key"]

    working = ApiKey.objects.filter(agent=registered.agent, revoked_at__isnull=True)
    assert working.count() == 5
    assert len(api_client.get(KEYS, **bearer(key)).json()["keys"]) == 5


@pytest.mark.django_db
def test_with_a_bound_of_one_an_overlap_ends_at_once(api_client, registered, settings):
    settings.LITHTRIX_MAX_WORKING_KEYS = 1

    answer = rotate_with_overlap(api_client, registered.api_key)

    assert answer["previous_key_expires_at"] is None
    assert [ended["prefix"] for ended in answer["overlap_ended"]] == [registered.api_key[:12]]
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    assert api_client.get(ME, **bearer(answer["api_key"])).status_code == 200


@pytest.mark.django_db
def test_a_rotation_without_overlap_ends_nothing_else(api_client, registered, settings):
    settings.LITHTRIX_MAX_WORKING_KEYS = 2
    kept = rotate_with_overlap(api_client, registered.api_key)

    response = api_client.post(ROTATE, **bearer(kept["api_key"]))

    assert response.status_code == 200
    assert response.json()["overlap_ended"] == []
    assert api_client.get(ME, **registered.auth).status_code == 200  # still in its overlap


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_rotations_never_leave_more_than_the_bound_working(
    make_agent, settings, throttle_rates
):
    from rest_framework.test import APIClient

    settings.LITHTRIX_MAX_WORKING_KEYS = 3
    throttle_rates(agent_free="1000/m")
    registered = make_agent(name="fleet")
    current = [registered.api_key]
    lock = threading.Lock()
    stop = threading.Event()
    seen: list[int] = []
    statuses: list[int] = []

    def rotate() -> None:
        client = APIClient()
        try:
            for _ in range(15):
                with lock:
                    key = current[-1]
                response = client.post(
                    ROTATE, WEEK, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
                )
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        current.append(response.json()["api_key"])
        finally:
            connection.close()

    def watch() -> None:
        try:
            while not stop.is_set():
                seen.append(
                    ApiKey.objects.filter(
                        working_keys_condition(timezone.now()), agent=registered.agent
                    ).count()
                )
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()

    # Only the current key rotates: a thread that raced with an older one got 401.
    assert set(statuses) <= {200, 401}
    assert statuses.count(200) >= 5  # the bound was passed many times over
    assert seen and max(seen) <= 3
    working = ApiKey.objects.filter(working_keys_condition(timezone.now()), agent=registered.agent)
    assert working.count() == 3
    assert set(working.values_list("prefix", flat=True)) == {key[:12] for key in current[-3:]}


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "content_type", "status", "error_code"), NOT_A_JSON_OBJECT)
def test_revoke_refuses_a_body_that_is_not_a_json_object(
    api_client, registered, body, content_type, status, error_code
):
    response = api_client.generic(
        "POST", REVOKE, body, content_type=content_type, **registered.auth
    )
    assert_envelope(response, status, error_code)
    assert ApiKey.objects.get(agent=registered.agent).revoked_at is None
    assert api_client.get(ME, **registered.auth).status_code == 200
    # An empty JSON object is no body at all.
    ok = api_client.generic(
        "POST", REVOKE, "{}", content_type="application/json", **registered.auth
    )
    assert ok.status_code == 200
