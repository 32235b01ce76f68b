"""Fixtures for lithtrix's tests: dependencies broken on purpose (see faults.py)."""

from lithtrix.tests.faults import closed_port, throwaway_redis  # noqa: F401
