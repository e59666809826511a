from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seedfl.core.version_vector import VersionVector

ORIGINS = [bytes([i]) * 16 for i in range(5)]

vectors = st.dictionaries(st.sampled_from(ORIGINS), st.integers(0, 50)).map(VersionVector)


@given(vectors, vectors)
def test_merge_commutative(a: VersionVector, b: VersionVector) -> None:
    assert a.merged(b) == b.merged(a)


@given(vectors, vectors, vectors)
def test_merge_associative(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    assert a.merged(b).merged(c) == a.merged(b.merged(c))


@given(vectors)
def test_merge_idempotent(a: VersionVector) -> None:
    assert a.merged(a) == a
    assert a.merged(VersionVector()) == a


@given(vectors, vectors)
def test_merge_is_pointwise_max_and_dominates(a: VersionVector, b: VersionVector) -> None:
    m = a.merged(b)
    for o in ORIGINS:
        assert m.get(o) == max(a.get(o), b.get(o))
    assert m.dominates(a) and m.dominates(b)
    assert a.dominates(b) == (a.merged(b) == a)


@given(vectors, vectors)
def test_missing_from_is_exact(a: VersionVector, b: VersionVector) -> None:
    missing = a.missing_from(b)
    wanted = {(o, s) for o in ORIGINS for s in range(b.get(o)) if s >= a.get(o)}
    got = {(o, s) for o, start, end in missing for s in range(start, end)}
    assert got == wanted
    # Ranges are non-empty, one per origin, and filling them makes a dominate b.
    assert all(start < end for _, start, end in missing)
    assert len({o for o, _, _ in missing}) == len(missing)
    filled = a.merged(VersionVector({o: end for o, _, end in missing}))
    assert filled.dominates(b)
    assert filled.total() - a.total() == len(wanted)


@given(vectors)
def test_dict_round_trip_and_hash(a: VersionVector) -> None:
    back = VersionVector.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back == a
    assert hash(back) == hash(a)
    assert back.digest() == a.digest()


def test_zero_counts_are_canonical() -> None:
    a = VersionVector({ORIGINS[0]: 0, ORIGINS[1]: 3})
    b = VersionVector({ORIGINS[1]: 3})
    assert a == b and hash(a) == hash(b) and a.digest() == b.digest()
    assert len(a) == 1
    assert a.items() == [(ORIGINS[1], 3)]
    assert a.get(ORIGINS[4]) == 0


def test_digest_value_and_order_independence() -> None:
    x, y = ORIGINS[2], ORIGINS[1]
    a = VersionVector({x: 5, y: 7})
    b = VersionVector({y: 7, x: 5})
    expected = hashlib.blake2b(
        y + (7).to_bytes(8, "little") + x + (5).to_bytes(8, "little"),
        digest_size=8,
        person=b"seedfl/vv/v1",
    ).digest()
    assert a.digest() == b.digest() == expected
    assert len(a.digest()) == 8
    assert VersionVector({x: 5, y: 8}).digest() != a.digest()


def test_total_items_and_with_count() -> None:
    a = VersionVector({ORIGINS[3]: 4, ORIGINS[0]: 2})
    assert a.total() == 6
    assert [o for o, _ in a.items()] == [ORIGINS[0], ORIGINS[3]]
    assert a.with_count(ORIGINS[3], 1).get(ORIGINS[3]) == 1
    assert a.with_count(ORIGINS[3], 0) == VersionVector({ORIGINS[0]: 2})


@pytest.mark.parametrize(
    "counts",
    [{b"short": 1}, {ORIGINS[0]: -1}, {ORIGINS[0]: 1.5}, {"00" * 16: 1}],
)
def test_rejects_malformed(counts: dict[object, object]) -> None:
    with pytest.raises(ValueError):
        VersionVector(counts)  # type: ignore[arg-type]


def test_from_dict_rejects_non_hex() -> None:
    with pytest.raises(ValueError, match="not hex"):
        VersionVector.from_dict({"zz" * 16: 1})
    with pytest.raises(ValueError, match="16 bytes"):
        VersionVector.from_dict({"00": 1})
