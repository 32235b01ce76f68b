"""The admin login is throttled per user name and per client address (django-axes)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User

LOGIN = "/admin/login/?next=/admin/"


def login(client, username: str, password: str, ip: str):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.fixture
def staff(db):
    for name in ("alice", "bob"):
        User.objects.create_user(name, password=f"{name}-right-password", is_staff=True)


@pytest.mark.django_db
def test_after_five_wrong_passwords_the_right_one_is_refused(client, staff):
    statuses = [
        login(client, "alice", "wrong", "192.0.2.1").status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form, then locked

    refused = login(client, "alice", "alice-right-password", "192.0.2.1")

    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_lockout_holds_per_user_name_and_per_address(client, staff):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "alice", "wrong", "192.0.2.1")

    # The user name from another address, and another user from the address: refused.
    assert login(client, "alice", "alice-right-password", "198.51.100.2").status_code == 429
    assert login(client, "bob", "bob-right-password", "192.0.2.1").status_code == 429
    # Another user from another address: unaffected.
    response = login(client, "bob", "bob-right-password", "198.51.100.2")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.django_db
def test_fewer_failures_then_the_right_password_logs_in(client, staff):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "alice", "wrong", "192.0.2.1")
    assert login(client, "alice", "alice-right-password", "192.0.2.1").status_code == 302


def test_staff_sessions_last_eight_hours_by_default():
    assert settings.LITHTRIX_ADMIN_SESSION_SECONDS == 8 * 3600
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
