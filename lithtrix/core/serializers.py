"""Serializer fields shared by the apps."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A CharField that accepts only JSON strings: numbers, booleans, lists are refused.

    DRF's CharField turns 42 into "42"; an API contract that says "a JSON string"
    must not. Whitespace is kept as sent (identifiers are compared exactly).
    """

    default_error_messages = {"invalid": "Must be a string."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if not data.strip() and not self.allow_blank:
            self.fail("blank")
        return super().to_internal_value(data)
