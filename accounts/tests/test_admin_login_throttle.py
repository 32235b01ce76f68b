"""The admin login is throttled per user name from one address, and per address
(django-axes): failures from elsewhere never lock a staff user out."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User

LOGIN = "/admin/login/?next=/admin/"
ATTACKER, OFFICE = "192.0.2.1", "198.51.100.2"


def login(client, username: str, password: str, ip: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def staff(db):
    for name in ("alice", "bob", "mallory"):
        User.objects.create_user(name, password=f"{name}-right-password", is_staff=True)


def fail(client, username: str, ip: str, times: int, **extra) -> list[int]:
    return [login(client, username, "wrong", ip, **extra).status_code for _ in range(times)]


@pytest.mark.django_db
def test_after_five_wrong_passwords_the_right_one_is_refused_from_there(client, staff):
    statuses = fail(client, "alice", ATTACKER, settings.AXES_FAILURE_LIMIT)
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form, then locked

    refused = login(client, "alice", "alice-right-password", ATTACKER)

    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_failures_from_one_address_do_not_lock_the_user_out_elsewhere(client, staff):
    fail(client, "alice", ATTACKER, 3 * settings.AXES_FAILURE_LIMIT)

    assert logged_in(login(client, "alice", "alice-right-password", OFFICE))


@pytest.mark.django_db
def test_one_user_names_failures_do_not_lock_the_address_for_others(client, staff):
    fail(client, "alice", ATTACKER, settings.AXES_FAILURE_LIMIT)

    assert logged_in(login(client, "bob", "bob-right-password", ATTACKER))


@pytest.mark.django_db
def test_many_failures_from_one_address_lock_it_for_every_name(client, staff, settings):
    settings.LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT = 12
    names = [f"guess-{n}" for n in range(12)]
    statuses = [login(client, name, "wrong", ATTACKER).status_code for name in names]
    assert statuses == [200] * 11 + [429]

    assert login(client, "bob", "bob-right-password", ATTACKER).status_code == 429
    assert "_auth_user_id" not in client.session
    assert logged_in(login(client, "bob", "bob-right-password", OFFICE))


@pytest.mark.django_db
def test_a_right_password_forgets_only_that_users_failures(client, staff, settings):
    """Logging in to an account of one's own does not wipe the address's count of
    failures for other names."""
    settings.LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT = 8
    fail(client, "alice", ATTACKER, 3)
    fail(client, "bob", ATTACKER, 3)
    assert logged_in(login(client, "mallory", "mallory-right-password", ATTACKER))
    client.logout()

    # Each name is under its own limit; the address reaches 8.
    assert fail(client, "carol", ATTACKER, 2) == [200, 429]


@pytest.mark.django_db
def test_fewer_failures_then_the_right_password_logs_in(client, staff):
    fail(client, "alice", ATTACKER, settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(login(client, "alice", "alice-right-password", ATTACKER))


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_client_address_is_what_is_locked(client, staff, settings):
    settings.LITHTRIX_TRUSTED_PROXIES = ["10.0.0.1"]
    proxy = "10.0.0.1"
    fail(client, "alice", proxy, settings.AXES_FAILURE_LIMIT, HTTP_X_FORWARDED_FOR=ATTACKER)

    refused = login(client, "alice", "alice-right-password", proxy, HTTP_X_FORWARDED_FOR=ATTACKER)
    assert refused.status_code == 429
    office = login(client, "alice", "alice-right-password", proxy, HTTP_X_FORWARDED_FOR=OFFICE)
    assert logged_in(office)


def test_staff_sessions_last_eight_hours_by_default():
    assert settings.LITHTRIX_ADMIN_SESSION_SECONDS == 8 * 3600
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
