"""zo.swarm_scale: N nodes each stepping at lr move the swarm N times as far.

Simulated like ``seedfl/bench/learning.py`` ``_run_arm``: one Engine per node
(own model copy, shard, node id), synchronous rounds: every node steps at the
same θ, then applies the others' updates of the round with ``apply_many``.
Letters task of test_learning.py, ε = 1e-3, batch 16, lr = 5e-3. Measured
(this machine): alone the loss EMA falls 0.69 → 0.04 in 150 steps; 2 nodes
with swarm_scale = "none" stop with DivergedError in round 82 (5 of 6 node-id
choices diverge within 150 rounds, all 6 single runs are stable); 8 nodes with
"mean" fall 0.61 → 0.13 in 60 rounds.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_learning import TASK, synthetic

from seedfl.core.codecs import make_codec
from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.core.seeds import update_seed
from seedfl.core.updates import UpdateBatch
from seedfl.training.engine import DivergedError, Engine, swarm_weight
from seedfl.training.model import load_model
from seedfl.training.task import Task

LR = 5e-3
IDS = [bytes([0xA0 + i]) * 16 for i in range(8)]


def _cfg(scale: str) -> SwarmConfig:
    return SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK,
                       zo=dataclasses.replace(ZOConfig(), lr=LR, eps=1e-3, batch_size=16,
                                              swarm_scale=scale))


def _engines(scale: str, nodes: int) -> list[Engine]:
    cfg = _cfg(scale)
    data = synthetic(64 * nodes, seed=0)
    out = []
    for i in range(nodes):
        bundle = load_model(cfg.model)
        out.append(Engine(cfg, bundle, Task.from_config(cfg.task, bundle.tokenizer),
                          data[i::nodes], IDS[i]))
    return out


def _rounds(engines: list[Engine], rounds: int) -> tuple[float, float]:
    """Run synchronous rounds; (loss EMA after 10 rounds, at the end) of node 0."""
    start = 0.0
    for r in range(rounds):
        mine = [e.step(len(engines)) for e in engines]
        for i, e in enumerate(engines):
            e.apply_many([b for j, b in enumerate(mine) if j != i])
        if r == 9:
            start = engines[0].stats.loss_ema or 0.0
    end = engines[0].stats.loss_ema
    assert end is not None
    return start, end


def test_one_node_is_stable_and_two_unscaled_nodes_diverge() -> None:
    start, end = _rounds(_engines("none", 1), 150)
    assert end < 0.5 * start
    with pytest.raises(DivergedError, match=r"zo\.lr"):
        _rounds(_engines("none", 2), 150)


def test_mean_scaled_swarm_of_eight_trains_at_the_same_lr() -> None:
    engines = _engines("mean", 8)
    start, end = _rounds(engines, 60)
    assert end < 0.5 * start
    assert all(e.stats.steps == 60 for e in engines)


def test_code_is_encode_of_g_over_n_and_replays_bit_exactly() -> None:
    a, b = _engines("mean", 2)
    batch = a.step(4)
    seed = update_seed(a.swarm_key, a.node_id, 0)
    code, _ = make_codec(a.cfg.codec).encode(a.stats.last_g / 4, seed)
    assert batch.codes == bytes([code])
    b.apply(batch)
    for p, q in zip(a.bundle.params, b.bundle.params, strict=True):
        assert p.equal(q)
    assert swarm_weight("sqrt", 4) == 0.5 and swarm_weight("none", 4) == 1.0
    with pytest.raises(ValueError):
        a.step(0)


def test_replay_needs_no_count() -> None:
    # The factor is inside the byte: a replica applies it without knowing N.
    a, b = _engines("mean", 2)
    batches: list[UpdateBatch] = [a.step(n) for n in (1, 3, 8)]
    b.apply_many(batches)
    assert a.projection() == b.projection()
