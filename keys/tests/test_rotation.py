import threading

import pytest
from django.db import connection

from keys.models import ApiKey, KeyEvent
from testing.assertions import assert_envelope

ROTATE = "/v1/keys/rotate"
ME = "/v1/me"


@pytest.mark.django_db
def test_rotate_issues_a_new_key_and_the_old_one_stops_working(api_client, registered):
    response = api_client.post(ROTATE, **registered.auth)

    assert response.status_code == 200
    assert set(response.json()) == {"api_key", "previous_key_expires_at", "overlap_ended"}
    assert response.json()["previous_key_expires_at"] is None
    assert response.json()["overlap_ended"] == []
    new_key = response.json()["api_key"]
    assert new_key.startswith("ltx_") and new_key != registered.api_key
    assert_envelope(api_client.get(ME, **registered.auth), 401, "INVALID_API_KEY")
    me = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {new_key}")
    assert me.status_code == 200
    assert me.json()["agent_id"] == str(registered.agent.id)


@pytest.mark.django_db
def test_rotate_writes_audit_rows_and_keeps_one_active_key(api_client, registered):
    api_client.post(ROTATE, REMOTE_ADDR="203.0.113.7", **registered.auth)

    keys = ApiKey.objects.filter(agent=registered.agent)
    assert keys.count() == 2
    assert keys.filter(revoked_at__isnull=True).count() == 1
    kinds = list(
        KeyEvent.objects.filter(agent=registered.agent).order_by("id").values_list("kind", "ip")
    )
    assert kinds == [("issued", None), ("rotated", "203.0.113.7"), ("issued", "203.0.113.7")]


@pytest.mark.django_db
def test_rotate_ignores_a_body(api_client, registered):
    response = api_client.post(ROTATE, {"anything": 1}, format="json", **registered.auth)
    assert response.status_code == 200


@pytest.mark.django_db
def test_rotate_with_rotated_key_is_401(api_client, registered):
    api_client.post(ROTATE, **registered.auth)
    response = api_client.post(ROTATE, **registered.auth)
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert ApiKey.objects.filter(agent=registered.agent).count() == 2


@pytest.mark.django_db
def test_rotate_without_key_is_401(api_client):
    response = api_client.post(ROTATE)
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_rotate_with_get_is_405(api_client, registered):
    assert_envelope(api_client.get(ROTATE, **registered.auth), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_rotate_concurrently_with_the_same_key_only_one_wins(make_agent):
    from rest_framework.test import APIClient

    registered = make_agent(name="racer")
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def rotate() -> None:
        client = APIClient()
        barrier.wait()
        try:
            response = client.post(ROTATE, **registered.auth)
            with lock:
                results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [401] * (threads_count - 1)
    assert all(body["error_code"] == "INVALID_API_KEY" for status, body in results if status == 401)
    new_key = next(body["api_key"] for status, body in results if status == 200)
    keys = ApiKey.objects.filter(agent=registered.agent)
    assert keys.count() == 2
    active = keys.get(revoked_at__isnull=True)
    assert new_key.startswith(active.prefix)
    assert KeyEvent.objects.filter(agent=registered.agent, kind="rotated").count() == 1
