"""Fixtures for metering and rate-limit tests."""

from __future__ import annotations

import os
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.conf import settings


@pytest.fixture(autouse=True)
def ratelimit_clock(monkeypatch):
    """Freeze django-ratelimit's clock (``clock.now``, seconds) so a window never rolls over.

    Autouse: a test that counts RateLimit-Remaining must not see a window end
    between two requests. Server subprocesses keep the real clock.
    """
    # A whole minute starts here for no agent in particular; tests move it on purpose.
    clock = SimpleNamespace(now=1_900_000_000.0)
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: clock.now))
    return clock


@pytest.fixture
def redis_url() -> str:
    """The shared Redis the suite runs with; CI must have one, locally it is optional."""
    if not settings.REDIS_URL:
        if os.environ.get("CI"):
            pytest.fail("REDIS_URL is not set: CI must run this test against Redis.")
        pytest.skip("needs Redis (set REDIS_URL)")
    return settings.REDIS_URL
