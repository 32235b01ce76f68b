import math

import pytest

from keys.crypto import ALPHABET, RANDOM_LENGTH, generate_key, hash_key, is_well_formed
from lithtrix.core.openapi import EXAMPLE_API_KEY, EXAMPLE_ROTATED_KEY


def test_generated_keys_are_well_formed_and_unique():
    keys = {generate_key().key for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith("ltx_") and is_well_formed(k) for k in keys)


def test_key_carries_at_least_128_bits_of_randomness():
    assert RANDOM_LENGTH * math.log2(len(ALPHABET)) >= 128


def test_prefix_is_the_first_characters_and_hash_is_sha256_hex():
    generated = generate_key()
    assert generated.prefix == generated.key[:12]
    assert generated.hashed_key == hash_key(generated.key)
    assert len(generated.hashed_key) == 64
    assert generated.key not in repr(generated)


def test_every_single_character_typo_is_detected():
    key = generate_key().key
    body = key[4:]
    for position in range(len(body)):
        for replacement in "0aZ":
            if body[position] == replacement:
                continue
            typo = "ltx_" + body[:position] + replacement + body[position + 1 :]
            assert not is_well_formed(typo), typo


@pytest.mark.parametrize("example", [EXAMPLE_API_KEY, EXAMPLE_ROTATED_KEY])
def test_the_documented_example_keys_are_well_formed(example):
    # The OpenAPI examples are literals in lithtrix.core (which imports no app).
    assert is_well_formed(example)
