from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seedfl.core.store import StoreStats, UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector

ORIGINS = [bytes([i + 1]) * 16 for i in range(4)]
A, B = ORIGINS[0], ORIGINS[1]


def _dense_logs(rng: random.Random) -> dict[bytes, tuple[bytes, tuple[int, ...] | None]]:
    logs: dict[bytes, tuple[bytes, tuple[int, ...] | None]] = {}
    for i, origin in enumerate(ORIGINS):
        n = rng.randrange(0, 120)
        codes = bytes(rng.randrange(256) for _ in range(n))
        slots = tuple(rng.randrange(4096) for _ in range(n)) if i % 2 else None
        logs[origin] = (codes, slots)
    return logs


def _batches_for(
    origin: bytes, codes: bytes, slots: tuple[int, ...] | None, rng: random.Random
) -> list[UpdateBatch]:
    if not codes:
        return []
    whole = UpdateBatch(origin, 0, codes, slots)
    out: list[UpdateBatch] = []
    cut = 0
    while cut < len(codes):  # a random split covering everything
        step = rng.randrange(1, 20)
        out.append(whole.slice(cut, cut + step))
        cut += step
    for _ in range(rng.randrange(0, 8)):  # duplicates and overlapping ranges
        if rng.random() < 0.5:
            out.append(rng.choice(out))
        else:
            lo = rng.randrange(len(codes))
            out.append(whole.slice(lo, lo + rng.randrange(1, 40)))
    return out


def _check_accounting(stats: StoreStats) -> None:
    assert stats.received == (
        stats.stored + stats.duplicates + stats.overflow_dropped + stats.buffered
    )


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_random_permutations_end_dense_and_release_each_update_once(rng: random.Random) -> None:
    logs = _dense_logs(rng)
    batches = [b for o, (c, s) in logs.items() for b in _batches_for(o, c, s, rng)]
    rng.shuffle(batches)
    store = UpdateStore()
    released: dict[bytes, list[UpdateBatch]] = {o: [] for o in ORIGINS}
    for batch in batches:
        for out in store.add(batch):
            assert out.origin == batch.origin
            released[out.origin].append(out)
    for origin, (codes, slots) in logs.items():
        assert store.codes_for(origin) == codes
        assert store.slots_for(origin) == (slots if codes else None)
        seqs = [u.seq for b in released[origin] for u in b.updates()]
        assert seqs == list(range(len(codes)))  # once each, in seq order
        assert b"".join(b.codes for b in released[origin]) == codes
        if slots is not None:
            assert tuple(s for b in released[origin] for s in b.slots or ()) == slots
    assert store.version_vector() == VersionVector({o: len(c) for o, (c, _) in logs.items()})
    stats = store.stats
    assert stats.received == sum(len(b) for b in batches)
    assert stats.stored == sum(len(c) for c, _ in logs.values())
    assert stats.buffered == 0 and stats.overflow_dropped == 0
    _check_accounting(stats)


def test_gap_waits_then_releases_in_one_contiguous_batch() -> None:
    store = UpdateStore()
    assert store.add(UpdateBatch(A, 5, b"fg")) == []
    assert store.add(UpdateBatch(A, 2, b"cd")) == []
    assert store.stats.buffered == 4
    assert store.version_vector().get(A) == 0
    out = store.add(UpdateBatch(A, 0, b"ab"))
    assert out == [UpdateBatch(A, 0, b"abcd")]  # 5.. still waits for seq 4
    out = store.add(UpdateBatch(A, 3, b"De"))  # seq 3 is a duplicate, 4 closes the gap
    assert out == [UpdateBatch(A, 4, b"efg")]
    assert store.codes_for(A) == b"abcdefg"
    stats = store.stats
    assert (stats.received, stats.stored, stats.duplicates, stats.buffered) == (8, 7, 1, 0)


def test_buffered_overlaps_count_as_duplicates() -> None:
    store = UpdateStore()
    store.add(UpdateBatch(A, 4, b"efgh"))
    store.add(UpdateBatch(A, 2, b"cdEFGHij"))  # 4..7 already buffered
    assert store.stats.duplicates == 4
    assert store.stats.buffered == 8
    out = store.add(UpdateBatch(A, 0, b"abcdef"))  # overlaps the buffer by 4
    assert out == [UpdateBatch(A, 0, b"abcdefghij")]
    _check_accounting(store.stats)
    assert store.stats.duplicates == 8


def test_overflow_drops_farthest_updates_and_refetch_completes() -> None:
    store = UpdateStore(max_buffered_per_origin=5)
    store.add(UpdateBatch(A, 10, b"0123"))
    store.add(UpdateBatch(A, 2, b"abc"))  # 7 buffered: the 2 farthest (12, 13) go
    stats = store.stats
    assert (stats.buffered, stats.overflow_dropped) == (5, 2)
    out = store.add(UpdateBatch(A, 0, b"xy"))
    assert out == [UpdateBatch(A, 0, b"xyabc")]
    assert store.stats.buffered == 2  # 10, 11 wait for 5..9
    out = store.add(UpdateBatch(A, 5, b"56789"))
    assert out == [UpdateBatch(A, 5, b"5678901")]
    assert store.version_vector().get(A) == 12
    assert store.add(UpdateBatch(A, 12, b"23")) == [UpdateBatch(A, 12, b"23")]
    _check_accounting(store.stats)


def test_zero_buffer_drops_every_gap() -> None:
    store = UpdateStore(max_buffered_per_origin=0)
    assert store.add(UpdateBatch(B, 1, b"z")) == []
    assert store.stats.overflow_dropped == 1 and store.stats.buffered == 0


def test_get_range_clips_and_fails_clearly() -> None:
    store = UpdateStore()
    store.add(UpdateBatch(A, 0, b"abcdef", (1, 2, 3, 4, 5, 6)))
    assert store.get_range(A, 2, 4) == UpdateBatch(A, 2, b"cd", (3, 4))
    assert store.get_range(A, 4, 100) == UpdateBatch(A, 4, b"ef", (5, 6))
    with pytest.raises(KeyError):
        store.get_range(B, 0, 1)
    with pytest.raises(ValueError, match="holds seqs"):
        store.get_range(A, 6, 8)
    with pytest.raises(ValueError, match="bad seq range"):
        store.get_range(A, 3, 3)


def test_slot_mode_is_fixed_per_origin() -> None:
    store = UpdateStore()
    store.add(UpdateBatch(A, 0, b"a", (3,)))
    with pytest.raises(ValueError, match="slots"):
        store.add(UpdateBatch(A, 1, b"b"))
    store.add(UpdateBatch(B, 0, b"b"))
    assert store.slots_for(B) is None
    assert store.stats.received == 2


def test_origins_and_unknown_codes() -> None:
    store = UpdateStore()
    store.add(UpdateBatch(B, 0, b"x"))
    store.add(UpdateBatch(A, 3, b"y"))  # buffered only: not an origin we hold
    assert store.origins() == [B]
    assert store.codes_for(ORIGINS[3]) == b""
    assert len(store.version_vector()) == 1


def test_load_appends_and_rejects_gaps() -> None:
    store = UpdateStore()
    n = store.load([UpdateBatch(A, 0, b"ab"), UpdateBatch(A, 1, b"bc"), UpdateBatch(B, 0, b"q")])
    assert n == 4
    assert store.codes_for(A) == b"abc"
    assert store.stats.received == 0
    with pytest.raises(ValueError, match="gap"):
        store.load([UpdateBatch(A, 5, b"z")])
    assert store.add(UpdateBatch(A, 0, b"abcd")) == [UpdateBatch(A, 3, b"d")]


def test_concurrent_writers_release_each_update_once() -> None:
    rng = random.Random(7)
    codes = bytes(rng.randrange(256) for _ in range(400))
    whole = UpdateBatch(A, 0, codes)
    batches = [whole.slice(i, i + 10) for i in range(0, 400, 10)] * 2
    rng.shuffle(batches)
    store = UpdateStore()
    released: list[UpdateBatch] = []
    guard = threading.Lock()

    def writer(part: list[UpdateBatch]) -> None:
        for batch in part:
            out = store.add(batch)
            with guard:
                released.extend(out)

    threads = [threading.Thread(target=writer, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert store.codes_for(A) == codes
    seqs = sorted(u.seq for b in released for u in b.updates())
    assert seqs == list(range(400))
    _check_accounting(store.stats)
