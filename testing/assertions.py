"""Assertions shared by the test suites."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def assert_envelope(response: Any, status: int, error_code: str) -> dict[str, Any]:
    """The answer is the error envelope with this status and code; returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert body["error_code"] == error_code
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"status", "error_code", "message", "details", "upgrade_url"}
    return body


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


# Bodies that are not a JSON object, and how any endpoint refuses them (an action
# that takes no body included): (body, Content-Type, status, error_code).
NOT_A_JSON_OBJECT = [
    ('{"a":', "application/json", 400, "VALIDATION_ERROR"),
    ("[]", "application/json", 400, "VALIDATION_ERROR"),
    ("[" * 5000, "application/json", 400, "VALIDATION_ERROR"),
    (b"\xff\xfe{", "application/json", 400, "VALIDATION_ERROR"),
    ("{}", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("a=1", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("{}", "", 415, "UNSUPPORTED_MEDIA_TYPE"),
]
