from __future__ import annotations

import pytest

from seedfl.core.updates import Update, UpdateBatch

A = bytes(range(16))
B = bytes(range(16, 32))


def test_batch_basics() -> None:
    batch = UpdateBatch(A, 10, bytes([1, 2, 3]))
    assert len(batch) == 3
    assert batch.end_seq == 13
    assert list(batch.updates()) == [Update(A, 10, 1), Update(A, 11, 2), Update(A, 12, 3)]


def test_batch_with_slots_yields_slots() -> None:
    batch = UpdateBatch(A, 0, b"\x00\xff", (7, 65535))
    assert [(u.seq, u.code, u.slot) for u in batch.updates()] == [(0, 0, 7), (1, 255, 65535)]


def test_batch_coerces_buffers_and_is_hashable() -> None:
    batch = UpdateBatch(A, 0, bytearray(b"ab"), [1, 2])  # type: ignore[arg-type]
    assert isinstance(batch.codes, bytes)
    assert batch.slots == (1, 2)
    assert batch == UpdateBatch(A, 0, b"ab", (1, 2))
    assert hash(batch) == hash(UpdateBatch(A, 0, b"ab", (1, 2)))


def test_slice_clips_and_keeps_slots() -> None:
    batch = UpdateBatch(A, 5, b"abcdef", (0, 1, 2, 3, 4, 5))
    part = batch.slice(7, 9)
    assert (part.first_seq, part.codes, part.slots) == (7, b"cd", (2, 3))
    clipped = batch.slice(0, 100)
    assert clipped == batch
    assert batch.slice(10, 11).codes == b"f"
    with pytest.raises(ValueError, match="does not overlap"):
        batch.slice(11, 20)
    with pytest.raises(ValueError, match="does not overlap"):
        batch.slice(7, 7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": b"short", "first_seq": 0, "codes": b"a"}, "16 bytes"),
        ({"origin": A, "first_seq": -1, "codes": b"a"}, "first_seq"),
        ({"origin": A, "first_seq": 0, "codes": b""}, "at least one"),
        ({"origin": A, "first_seq": 0, "codes": "a"}, "codes must be bytes"),
        ({"origin": A, "first_seq": 0, "codes": b"ab", "slots": (1,)}, "2 codes but 1 slots"),
        ({"origin": A, "first_seq": 0, "codes": b"a", "slots": (70000,)}, "slot"),
        ({"origin": A, "first_seq": 2**64 - 1, "codes": b"ab"}, "2\\*\\*64"),
    ],
)
def test_batch_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UpdateBatch(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((A, 0, 256), "code"),
        ((A, 0, -1), "code"),
        ((A, -1, 0), "seq"),
        ((A, 2**64, 0), "seq"),
        ((A[:15], 0, 0), "16 bytes"),
        ((A, 0, 0, -1), "slot"),
    ],
)
def test_update_validation(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Update(*args)  # type: ignore[arg-type]


def test_of_packs_and_rejects() -> None:
    batch = UpdateBatch(A, 3, b"xyz", (1, 2, 3))
    assert UpdateBatch.of(batch.updates()) == batch
    assert UpdateBatch.of([Update(B, 0, 9)]) == UpdateBatch(B, 0, b"\x09")
    with pytest.raises(ValueError, match="consecutive"):
        UpdateBatch.of([Update(A, 0, 1), Update(A, 2, 1)])
    with pytest.raises(ValueError, match="one origin"):
        UpdateBatch.of([Update(A, 0, 1), Update(B, 1, 1)])
    with pytest.raises(ValueError, match="slot"):
        UpdateBatch.of([Update(A, 0, 1, 4), Update(A, 1, 1)])
    with pytest.raises(ValueError, match="at least one"):
        UpdateBatch.of([])
