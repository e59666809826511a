"""DESIGN §2/§5 seed derivation: the published test vectors and argument checks."""

from __future__ import annotations

import hashlib

import pytest

from seedfl.core.seeds import (
    NODE_ID_BYTES,
    SWARM_KEY_BYTES,
    pool_seed,
    pool_seeds,
    swarm_key_of,
    uniform_pool_index,
    update_seed,
)

KEY = bytes(range(16))
ORIGIN = bytes(range(16, 32))


@pytest.mark.parametrize(
    ("seq", "expected"),
    [(0, 0xEEBEC3D45BFE249D), (1, 0x70410A1C770A79D7), (2**40, 0x8E8713AD01ADB6C6)],
)
def test_update_seed_vectors(seq: int, expected: int) -> None:
    assert update_seed(KEY, ORIGIN, seq) == expected


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0, 0x8134EE12F29012A1), (1, 0x720C268C096D1AFB), (4095, 0x7E1A84C74E4BD8CF)],
)
def test_pool_seed_vectors(k: int, expected: int) -> None:
    assert pool_seed(KEY, k) == expected


def test_update_seed_matches_its_definition() -> None:
    h = hashlib.blake2b(KEY + ORIGIN + (77).to_bytes(8, "little"), digest_size=8,
                        person=b"seedfl/seed/v1")
    assert update_seed(KEY, ORIGIN, 77) == int.from_bytes(h.digest(), "little")


def test_seeds_depend_on_every_input() -> None:
    base = update_seed(KEY, ORIGIN, 5)
    assert update_seed(KEY, ORIGIN, 6) != base
    assert update_seed(bytes(16), ORIGIN, 5) != base
    assert update_seed(KEY, bytes(16), 5) != base
    assert pool_seed(KEY, 0) != pool_seed(bytes(16), 0)


def test_pool_seeds_lists_slots_in_order() -> None:
    assert pool_seeds(KEY, 3) == [pool_seed(KEY, 0), pool_seed(KEY, 1), pool_seed(KEY, 2)]
    assert pool_seeds(KEY, 0) == []


def test_uniform_pool_index_is_in_range_and_derived_from_the_seed() -> None:
    for seq in range(50):
        k = uniform_pool_index(KEY, ORIGIN, seq, 7)
        assert 0 <= k < 7
        assert k == update_seed(KEY, ORIGIN, seq) % 7
    with pytest.raises(ValueError, match="positive"):
        uniform_pool_index(KEY, ORIGIN, 0, 0)


def test_swarm_key_is_the_fingerprint_prefix() -> None:
    fingerprint = bytes(range(100, 132))
    assert swarm_key_of(fingerprint) == fingerprint[:SWARM_KEY_BYTES]
    with pytest.raises(ValueError, match="16 bytes"):
        swarm_key_of(b"short")


@pytest.mark.parametrize("bad_key", [b"", bytes(15), bytes(17)])
def test_wrong_key_length_is_refused(bad_key: bytes) -> None:
    with pytest.raises(ValueError, match="swarm key"):
        update_seed(bad_key, ORIGIN, 0)
    with pytest.raises(ValueError, match="swarm key"):
        pool_seed(bad_key, 0)


@pytest.mark.parametrize("bad_origin", [b"", bytes(NODE_ID_BYTES - 1), bytes(NODE_ID_BYTES + 1)])
def test_wrong_origin_length_is_refused(bad_origin: bytes) -> None:
    with pytest.raises(ValueError, match="origin"):
        update_seed(KEY, bad_origin, 0)


@pytest.mark.parametrize("seq", [-1, 2**64])
def test_seq_outside_uint64_is_refused(seq: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        update_seed(KEY, ORIGIN, seq)
    with pytest.raises(ValueError, match="64-bit"):
        pool_seed(KEY, seq)


def test_largest_seq_is_accepted() -> None:
    assert 0 <= update_seed(KEY, ORIGIN, 2**64 - 1) < 2**64
