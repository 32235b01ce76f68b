"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Agent
from accounts.services import agent_register
from keys import hints


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if connection.vendor == "postgresql":
        return
    in_ci = bool(os.environ.get("CI"))
    for item in items:
        if not item.get_closest_marker("requires_postgres"):
            continue
        if in_ci:
            # A skip would hide exactly what CI is there to prove.
            raise pytest.UsageError(
                f"{item.nodeid} needs PostgreSQL; CI must set DATABASE_URL=postgres://..."
            )
        item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)"))


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    # Rate-limit counters live in the cache; every test starts with none (and no key
    # hints: keys.hints), and with
    # no process-local memory of earlier tests' failures (breaker, blocked addresses).
    from keys.authentication import reset_failure_limits
    from lithtrix.core.outages import reset
    from lithtrix.core.ratelimit import reset_breaker

    cache.clear()
    hints.clear()
    reset_breaker()
    reset_failure_limits()
    reset()


@pytest.fixture
def redis_url() -> str:
    """The shared Redis the suite runs with; CI must have one, locally it is optional."""
    if not settings.REDIS_URL:
        if os.environ.get("CI"):
            pytest.fail("REDIS_URL is not set: CI must run this test against Redis.")
        pytest.skip("needs Redis (set REDIS_URL)")
    return settings.REDIS_URL


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@dataclass
class RegisteredAgent:
    agent: Agent
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        """The Bearer header for Django's test client (WSGI environ name)."""
        return {"HTTP_AUTHORIZATION": f"Bearer {self.api_key}"}

    @property
    def auth_header(self) -> dict[str, str]:
        """The Bearer header for a real HTTP client (requests)."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def __repr__(self) -> str:
        return f"RegisteredAgent({self.agent.agent_name})"


@pytest.fixture
def make_agent(db):
    """Register agents through the real service: make_agent(name=..., owner=...)."""
    counter = iter(range(1, 1_000_000))

    def make(name: str | None = None, owner: str = "owner@example.com") -> RegisteredAgent:
        registration = agent_register(
            agent_name=name or f"agent-{next(counter)}", owner_identifier=owner
        )
        return RegisteredAgent(agent=registration.agent, api_key=registration.api_key)

    return make


@pytest.fixture
def registered(make_agent) -> RegisteredAgent:
    return make_agent(name="my-agent", owner="you@example.com")


class Clock:
    """timezone.now() under the test's control: ``clock.advance(seconds=...)``."""

    def __init__(self, now) -> None:
        self.now = now

    def advance(self, **delta) -> None:
        import datetime as dt

        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from django.utils import timezone

    clock = Clock(timezone.now())
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture
def ratelimit_clock(monkeypatch):
    """Freeze the rate limits' clock (``clock.now``, seconds) so a window never rolls over.

    A test that counts RateLimit-Remaining must not see a window end between two
    requests. Server subprocesses keep the real clock.
    """
    # A whole minute starts here for no agent in particular; tests move it on purpose.
    clock = SimpleNamespace(now=1_900_000_000.0)
    monkeypatch.setattr("lithtrix.core.ratelimit.clock", lambda: clock.now)
    # django-ratelimit (the per-IP scopes) reads time.time() through its module.
    monkeypatch.setattr("django_ratelimit.core.time", SimpleNamespace(time=lambda: clock.now))
    return clock


@pytest.fixture
def throttle_rates(settings):
    """Set some throttle scopes' rates for one test: ``throttle_rates(register="1/m")``."""

    def set_rates(**rates: str) -> None:
        rest_framework = settings.REST_FRAMEWORK
        merged = {**rest_framework["DEFAULT_THROTTLE_RATES"], **rates}
        settings.REST_FRAMEWORK = {**rest_framework, "DEFAULT_THROTTLE_RATES": merged}

    return set_rates
