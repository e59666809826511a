"""The engine in pool mode (DESIGN §5): joins from accumulators, order independence,
coalescing, slot validation, and learning with uniform and importance-sampled slots."""

from __future__ import annotations

import random

import pytest
import torch
from poolkit import PEERS, TASK, engine, flat, peer_batches, rel

from seedfl.core.codecs import CodecError
from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.core.pool import FRAMING_BYTES
from seedfl.core.updates import UpdateBatch
from seedfl.training.data import Example, split_holdout
from seedfl.training.evaluate import evaluate


def synthetic(n: int) -> list[Example]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        letters = "abcdef" if i % 2 else "ghijkl"
        text = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
        out.append(Example(text=text, label=str(i % 2)))
    return out


def config(size: int = 256, sampling: str = "uniform", lr: float = 2e-3) -> SwarmConfig:
    zo = ZOConfig(lr=lr, seeds="pool", pool_size=size, pool_sampling=sampling, batch_size=16)
    return SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK, zo=zo)


@pytest.mark.parametrize("sampling", ["uniform", "importance"])
def test_joiner_rebuilds_from_k_float32_accumulators(sampling: str) -> None:
    cfg = config(256, sampling)
    a = engine(cfg, synthetic(64))
    theta0 = flat(a)
    for i, batch in enumerate(peer_batches(cfg, 60)):
        a.apply(batch)
        if i % 6 == 0:
            a.step()
    assert a.stats.steps == 10 and a.applied_vector().total() > 250
    snapshot = a.pool_snapshot()
    assert len(snapshot) == 256 * 4 + FRAMING_BYTES  # the model state on the wire
    b = engine(cfg)
    regenerated = b.join_from_pool(snapshot, a.applied_vector())
    assert regenerated <= 256
    assert b.applied_vector() == a.applied_vector()
    assert rel(flat(a), theta0) > 1e-4  # training moved the weights
    assert rel(flat(a), flat(b)) <= 1e-6
    # Both keep applying the same updates and stay together.
    more = UpdateBatch(PEERS[0], a.applied[PEERS[0]], bytes([40, 200]),
                       (3, 4) if sampling == "importance" else None)
    a.apply(more)
    b.apply(more)
    assert rel(flat(a), flat(b)) <= 1e-6
    # An exact join also ends with the swarm's accumulator digest.
    c = engine(cfg)
    c.join_from_pool(a.pool_state(), a.applied_vector())
    assert c.pool is not None and a.pool is not None and b.pool is not None
    assert c.pool.digest() == a.pool.digest() != b.pool.digest()
    assert rel(flat(a), flat(c)) <= 1e-6


def test_join_refuses_an_engine_that_applied_updates() -> None:
    cfg = config()
    a = engine(cfg)
    a.apply(peer_batches(cfg, 1)[0])
    with pytest.raises(RuntimeError, match="applied nothing"):
        a.join_from_pool(a.pool_snapshot(), a.applied_vector())


def test_interleavings_give_identical_accumulators_and_close_weights() -> None:
    cfg = config(64)
    batches = peer_batches(cfg, 120)
    a, b = engine(cfg), engine(cfg)
    for batch in batches:
        a.apply(batch)
    # b: another interleaving (per origin order kept), drained in groups via apply_many.
    rng = random.Random(9)
    queues = {o: [x for x in batches if x.origin == o] for o in PEERS}
    pending: list[UpdateBatch] = []
    while any(queues.values()):
        o = rng.choice([o for o in PEERS if queues[o]])
        pending.append(queues[o].pop(0))
        if len(pending) >= rng.randint(1, 12):
            b.apply_many(pending)
            pending = []
    b.apply_many(pending)
    assert a.applied_vector() == b.applied_vector()
    assert a.pool is not None and b.pool is not None
    assert a.pool.digest() == b.pool.digest()
    assert a.pool.to_bytes() == b.pool.to_bytes()
    assert rel(flat(a), flat(b)) <= 1e-6


def test_a_backlog_coalesces_into_one_regeneration_per_slot() -> None:
    cfg = config(16)
    batches = peer_batches(cfg, 40)
    n = sum(len(x) for x in batches)
    one_by_one, drained = engine(cfg), engine(cfg)
    for batch in batches:
        one_by_one.apply(batch)
    drained.apply_many(batches)
    assert drained.stats.coalesced_terms == n  # no zero codes in these batches
    assert drained.stats.regenerations <= 16
    assert drained.stats.coalescing_ratio >= n / 16
    assert one_by_one.stats.regenerations > drained.stats.regenerations
    assert rel(flat(one_by_one), flat(drained)) <= 1e-6


def test_slot_mismatches_and_bad_codes_change_nothing() -> None:
    uniform, importance = engine(config(8)), engine(config(8, "importance"))
    before = flat(uniform)
    with pytest.raises(ValueError, match="carries slots"):
        uniform.apply(UpdateBatch(PEERS[0], 0, bytes([5]), (1,)))
    with pytest.raises(ValueError, match="lacks slots"):
        importance.apply(UpdateBatch(PEERS[0], 0, bytes([5])))
    with pytest.raises(ValueError, match="slot 8"):
        importance.apply_many([UpdateBatch(PEERS[0], 0, bytes([5]), (1,)),
                               UpdateBatch(PEERS[1], 0, bytes([5]), (8,))])
    with pytest.raises(CodecError):
        uniform.apply_many([UpdateBatch(PEERS[0], 0, bytes([5])),
                            UpdateBatch(PEERS[1], 0, bytes([0x80]))])
    for e in (uniform, importance):
        assert e.pool is not None and e.pool.updates == 0 and not e.applied
    assert torch.equal(flat(uniform), before)


@pytest.mark.parametrize("sampling", ["uniform", "importance"])
def test_eta_zero_leaves_weights_bit_identical(sampling: str) -> None:
    e = engine(config(32, sampling, lr=0.0), synthetic(32))
    before = flat(e)
    for _ in range(3):
        batch = e.step()
        assert (batch.slots is not None) == (sampling == "importance")
    assert torch.equal(flat(e), before)


@pytest.mark.parametrize("sampling", ["uniform", "importance"])
def test_tiny_model_learns_in_pool_mode(sampling: str) -> None:
    """120 steps on the synthetic task of test_learning, K = 64 (slots repeat)."""
    torch.set_num_threads(1)
    train, held_out = split_holdout(synthetic(384), 1 / 3, seed=0)
    e = engine(config(64, sampling), train)
    before = evaluate(e.bundle, e.task, held_out, batch_size=64)
    for _ in range(120):
        e.step()
    after = evaluate(e.bundle, e.task, held_out, batch_size=64)
    assert e.pool is not None and sum(1 for c in e.pool.counts if c) > 40
    assert after.loss < 0.8 * before.loss
    assert after.accuracy is not None and after.accuracy >= 0.75


def test_importance_steps_carry_their_slot_and_follow_the_history() -> None:
    cfg = config(8, "importance")
    e = engine(cfg, synthetic(32))
    # Peer history: slot 5 saw large |g|, the others small, so 5 is the likeliest.
    for i, k in enumerate(range(8)):
        e.apply(UpdateBatch(PEERS[0], i, bytes([100 if k == 5 else 5]), (k,)))
    assert e.pool is not None
    p = e.pool.probabilities()
    assert int(p.argmax()) == 5 and p[5] / p[0] == pytest.approx(2.718281828, rel=1e-9)
    batch = e.step()
    assert batch.slots is not None and 0 <= batch.slots[0] < 8
    assert e.pool.counts[batch.slots[0]] == 2  # its own update landed on the slot it carries
