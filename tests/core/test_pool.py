"""Pool accumulators, importance sampling and rebuild (DESIGN §5)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from seedfl.core.codecs import CodecConfig, make_codec
from seedfl.core.perturbation import add_directions_
from seedfl.core.pool import (
    FRAMING_BYTES,
    PoolAccumulators,
    PoolStateError,
    draw_slot,
    importance_probabilities,
    rebuild_,
    snapshot_values,
)
from seedfl.core.rule import LearningRate
from seedfl.core.seeds import pool_seeds

KEY = bytes(range(16))
ORIGINS = [bytes([i]) * 16 for i in range(1, 5)]


@dataclass(frozen=True)
class Sched:
    lr: float = 2e-3
    schedule: str = "constant"
    warmup: int = 0
    horizon: int = 0


def make(codec: str = "log8", size: int = 64, sched: Sched = Sched()) -> PoolAccumulators:
    return PoolAccumulators(size, make_codec(CodecConfig(name=codec)), LearningRate(sched))


def logs(codec: str, n: int, size: int) -> dict[bytes, tuple[bytes, list[int]]]:
    rng = random.Random(3)
    valid = [c for c in range(256) if make_codec(CodecConfig(name=codec)).valid(c)]
    return {o: (bytes(rng.choice(valid) for _ in range(n)),
                [rng.randrange(size) for _ in range(n)]) for o in ORIGINS}


def feed(acc: PoolAccumulators, data: dict[bytes, tuple[bytes, list[int]]], order: int) -> None:
    """All updates, per-origin order kept, origins interleaved in random-size chunks."""
    rng = random.Random(order)
    pos = dict.fromkeys(data, 0)
    n = len(next(iter(data.values()))[0])
    while any(p < n for p in pos.values()):
        o = rng.choice([o for o in data if pos[o] < n])
        m = min(rng.randint(1, 9), n - pos[o])
        codes, slots = data[o]
        acc.add_batch(pos[o], codes[pos[o]:pos[o] + m], slots[pos[o]:pos[o] + m])
        pos[o] += m


@pytest.mark.parametrize("codec", ["log8", "lin8", "sign1"])
@pytest.mark.parametrize("sched", [Sched(), Sched(schedule="cosine", warmup=50, horizon=400)])
def test_interleavings_give_bit_identical_state(codec: str, sched: Sched) -> None:
    data = logs(codec, 300, 32)
    a, b = make(codec, 32, sched), make(codec, 32, sched)
    feed(a, data, order=1)
    feed(b, data, order=2)
    assert a.updates == b.updates == 1200
    assert a.digest() == b.digest()
    assert a.to_exact_bytes() == b.to_exact_bytes()
    assert a.to_bytes() == b.to_bytes()
    assert np.array_equal(a.values(), b.values())
    c = make(codec, 32, sched)
    feed(c, {o: (d[0][:-1], d[1][:-1]) for o, d in data.items()}, order=1)
    assert c.digest() != a.digest()  # the digest sees one update less


@pytest.mark.parametrize("codec", ["lin8", "sign1"])
def test_linear_codecs_are_exact_integer_sums(codec: str) -> None:
    c = make_codec(CodecConfig(name=codec))
    acc = make(codec, 8)
    codes = bytes([1, 1, 0, 1] if codec == "sign1" else [5, 250, 127, 3])
    acc.add_batch(0, codes, [2, 2, 2, 7])
    ints = [c.integer(x) for x in codes]
    assert acc.sums[2] == sum(ints[:3]) and acc.sums[7] == ints[3]
    assert acc.values()[2] == 2e-3 * c.scale * sum(ints[:3])


def test_log8_fixed_point_is_within_its_documented_resolution() -> None:
    c = make_codec(CodecConfig())
    acc = make("log8", 4)
    rng = random.Random(0)
    codes = bytes(rng.choice([x for x in range(256) if x != 0x80]) for _ in range(2000))
    acc.add_batch(0, codes, [0] * 2000)
    exact = math.fsum(2e-3 * c.decode(x) for x in codes)
    g0 = 2.0**-10
    assert abs(acc.values()[0] - exact) <= 2000 * 2e-3 * g0 * 2.0**-25
    assert acc.values()[0] != 0.0


def test_eta_zero_keeps_every_accumulator_zero() -> None:
    acc = make("log8", 4, Sched(lr=0.0))
    acc.add_batch(0, bytes([100, 27]), [1, 1])
    assert not acc.values().any()


def test_snapshot_is_k_float32_plus_framing_and_round_trips() -> None:
    a = make("log8", 64)
    feed(a, logs("log8", 100, 64), order=1)
    blob = a.to_bytes()
    assert len(blob) == 64 * 4 + FRAMING_BYTES and FRAMING_BYTES == 52
    assert np.array_equal(snapshot_values(blob), a.values().astype(np.float32))
    joiner = make("log8", 64)
    joiner.load_bytes(blob)
    assert np.array_equal(joiner.values(), a.values().astype(np.float32).astype(np.float64))
    joiner.add_batch(0, bytes([10]), [5])  # keeps summing on top of the base
    assert joiner.values()[5] == float(np.float32(a.values()[5])) + joiner.unit * joiner.sums[5]


def test_exact_form_round_trips_and_rejects_corruption_and_other_pools() -> None:
    a = make("log8", 64)
    feed(a, logs("log8", 100, 64), order=1)
    blob = a.to_exact_bytes()
    b = make("log8", 64)
    b.load_bytes(blob)
    assert b.digest() == a.digest() and b.counts == a.counts and b.abs_sums == a.abs_sums
    assert np.array_equal(b.probabilities(), a.probabilities())
    bad = bytearray(blob)
    bad[60] ^= 1
    with pytest.raises(PoolStateError, match="checksum"):
        b.load_bytes(bytes(bad))
    with pytest.raises(PoolStateError, match="K=64"):
        make("log8", 32).load_bytes(blob)
    with pytest.raises(PoolStateError, match="unit"):
        make("log8", 64, Sched(lr=1e-3)).load_bytes(blob)
    with pytest.raises(PoolStateError):
        b.load_bytes(blob[:20])
    assert b.digest() == a.digest()  # failed loads changed nothing


def test_bad_slot_or_code_changes_nothing() -> None:
    acc = make("log8", 8)
    with pytest.raises(ValueError, match="slot 8"):
        acc.add_batch(0, bytes([1, 2]), [0, 8])
    with pytest.raises(ValueError, match="code 128"):
        acc.add_batch(0, bytes([1, 0x80]), [0, 1])
    assert acc.updates == 0 and not any(acc.sums)


def test_rebuild_matches_applying_updates_one_by_one() -> None:
    gen = torch.Generator().manual_seed(0)
    theta0 = [torch.randn(s, generator=gen) * 0.02 for s in [(16, 8), (300,), (3, 5, 7)]]
    seeds = pool_seeds(KEY, 16)
    acc = make("log8", 16)
    codec = make_codec(CodecConfig())
    live = [p.clone() for p in theta0]
    data = logs("log8", 50, 16)
    for codes, slots in data.values():
        acc.add_batch(0, codes, slots)
        for code, k in zip(codes, slots, strict=True):
            add_directions_(live, seeds[k], -2e-3 * codec.decode(code))
    rebuilt = [p.clone() for p in theta0]
    assert rebuild_(rebuilt, snapshot_values(acc.to_bytes()), seeds) <= 16
    a = torch.cat([p.reshape(-1) for p in live]).double()
    b = torch.cat([p.reshape(-1) for p in rebuilt]).double()
    assert not torch.equal(b, torch.cat([p.reshape(-1) for p in theta0]).double())
    assert float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a)) < 1e-6


def test_importance_formula() -> None:
    assert np.array_equal(importance_probabilities([0, 0], [0, 0]), [0.5, 0.5])
    assert np.array_equal(importance_probabilities([6, 9], [2, 3]), [0.5, 0.5])  # equal means
    # means 1, 3, unseen (prior = mean of 1, 3, 5 = 3), 5 → normalised 0, .5, .5, 1
    p = importance_probabilities([2, 3, 0, 5], [2, 1, 0, 1])
    w = np.exp([0.0, 0.5, 0.5, 1.0])
    assert np.allclose(p, w / w.sum(), rtol=1e-15, atol=0)


def chi_square_critical(df: int, z: float) -> float:
    """Wilson–Hilferty: the chi-square quantile whose normal quantile is z."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def test_importance_draws_follow_the_formula_chi_square() -> None:
    """X² over K = 16 slots (df = 15) from 32,000 draws, against the 0.999 quantile.

    Tables give χ²₀.₉₉₉(15) = 37.697; Wilson–Hilferty (z₀.₉₉₉ = 3.0902) agrees to
    1%. A correct sampler fails this with probability 0.001; draws are a pure
    function of (swarm key, origin, seq), so the outcome is fixed. The same
    statistic rejects uniform sampling by a wide margin (the test has power).
    """
    size, n = 16, 32_000
    acc = make("log8", size)
    rng = random.Random(5)
    for k in range(size):  # slot k sees codes of magnitude about 4k: different means
        codes = bytes(min(127, 4 * k + rng.randint(0, 3)) for _ in range(5))
        acc.add_batch(0, codes, [k] * 5)
    p = acc.probabilities()
    assert p.max() / p.min() == pytest.approx(math.e, rel=0.02)
    counts = np.zeros(size)
    for seq in range(n):
        counts[draw_slot(KEY, ORIGINS[seq % 4], seq, p)] += 1
    expected = n * p
    x2 = float(((counts - expected) ** 2 / expected).sum())
    critical = 37.697
    assert chi_square_critical(15, 3.0902) == pytest.approx(critical, rel=0.01)
    assert x2 < critical, x2
    uniform = np.full(size, n / size)
    assert float(((counts - uniform) ** 2 / uniform).sum()) > 10 * critical
