"""Fixtures for the staff admin's tests."""

from __future__ import annotations

import os
import shutil

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.management.commands.support_group import support_group
from accounts.models import Agent
from testing.factories import set_calls_total

# Playwright's sync API runs an event loop in the test thread; Django refuses ORM
# calls while one runs (SynchronousOnlyOperation) unless told it is safe, which it
# is here: the loop only drives the browser.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

AGENTS_URL = "/admin/accounts/agent/"


def agent_url(agent: Agent, action: str = "change") -> str:
    return f"{AGENTS_URL}{agent.pk}/{action}/"


def set_calls(agent: Agent, calls: int) -> Agent:
    set_calls_total(agent, calls)
    return agent


@pytest.fixture
def over_limit_agent(make_agent, settings) -> Agent:
    registered = make_agent(name="greedy-bot", owner="greedy@example.com")
    set_calls(registered.agent, settings.LITHTRIX_FREE_CALL_LIMIT)
    return registered.agent


@pytest.fixture
def support_user(db):
    user = get_user_model().objects.create_user(
        username="support-sam", password="support-pass", is_staff=True
    )
    user.groups.add(support_group())
    return user


@pytest.fixture
def support_client(support_user) -> Client:
    client = Client()
    client.force_login(support_user)
    return client


@pytest.fixture
def staff_client_with(db):
    """A logged-in support user holding, besides viewing, the given permissions."""

    def make(*perms: str) -> tuple[Client, object]:
        user = get_user_model().objects.create_user(
            username=f"staff-{'-'.join(perms)}", is_staff=True
        )
        user.groups.add(support_group())
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        client = Client()
        client.force_login(user)
        return client, user

    return make


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright drives the system's Chromium (Debian's package), never a download."""
    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not executable:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the browser test", pytrace=False)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": executable, "args": CHROMIUM_ARGS}
