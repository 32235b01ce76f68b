"""The JSON nesting bound: linear in the body's size, and exact."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lithtrix.core.parsers import MAX_JSON_DEPTH, json_depth_exceeds
from testing.assertions import assert_envelope

# A string opened and never closed, full of escaped quotes, then brackets: 64 kB
# that a pattern restarting at each quote scans in quadratic time.
ESCAPED_QUOTES = b'"' + b'\\"' * 32_000 + b"[" * (MAX_JSON_DEPTH + 1)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def assert_depth_found(raw: bytes, depth: int) -> None:
    """The check refuses ``raw`` under any limit below its depth, and accepts it at its depth."""
    assert json_depth_exceeds(raw, limit=depth) is False
    if depth:
        assert json_depth_exceeds(raw, limit=depth - 1) is True


def test_a_64_kb_string_of_escaped_quotes_is_checked_in_linear_time():
    assert len(ESCAPED_QUOTES) < 65_536

    started = time.perf_counter()
    exceeds = json_depth_exceeds(ESCAPED_QUOTES)
    elapsed = time.perf_counter() - started

    # The brackets are inside a string that never closes: not structure.
    assert exceeds is False
    assert elapsed < 0.1


@pytest.mark.django_db
def test_a_64_kb_string_of_escaped_quotes_is_400_malformed_at_once(api_client):
    warm_up = api_client.post("/v1/register", data="[", content_type="application/json")
    assert warm_up.status_code == 400  # the first request of a process imports and connects

    started = time.perf_counter()
    response = api_client.post("/v1/register", data=ESCAPED_QUOTES, content_type="application/json")
    elapsed = time.perf_counter() - started

    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert body["message"].startswith("Malformed JSON body")
    assert elapsed < 0.1


# Quotes, backslashes and brackets inside strings are what a scan can get wrong.
TEXT = st.text(st.sampled_from('"\\[]{}') | st.characters())
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children) | st.dictionaries(TEXT, children),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    value=JSON_VALUES,
    ensure_ascii=st.booleans(),
    # json.loads reads UTF-8, -16 and -32 bodies; a UTF-16 code unit can hold the byte of a quote.
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]),
)
def test_depth_agrees_with_json_loads_on_json_values(value, ensure_ascii, encoding):
    raw = json.dumps(value, ensure_ascii=ensure_ascii).encode(encoding, "surrogatepass")
    assert_depth_found(raw, depth_of(json.loads(raw)))


JSON_PIECES = st.sampled_from(
    [b"[", b"]", b"{", b"}", b'"', b"\\", b'\\"', b"\\\\", b'"a"', b"1", b",", b":", b" "]
)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=200) | st.lists(JSON_PIECES, max_size=80).map(b"".join))
def test_depth_agrees_with_json_loads_on_byte_strings(raw):
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        # Not JSON: the check must still answer, and anything it lets through must
        # not make the parser recurse past the limit.
        if not json_depth_exceeds(raw):
            with pytest.raises(ValueError):
                json.loads(raw)
        return
    assert_depth_found(raw, depth_of(value))
