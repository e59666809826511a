"""Seed pools (DESIGN §5, §12): replay work with coalescing, joins, and learning.

- ``replay``: 8 simulated peers produce updates at full speed (random log8
  codes); the node drains its backlog of 8·b pending updates at once, for
  backlogs b per peer. Per-(origin, seq) seeds cost one regeneration per
  update; a pool of K = 1024 costs one per distinct slot in the backlog
  (K·(1 − (1 − 1/K)^n) expected for n uniform updates). Reported: updates
  applied per second in both modes and their ratio. It runs the engine's own
  apply path (``PoolAccumulators.add_batch`` + ``apply_coalesced_``) over plain
  tensors of ``n_params`` elements, without a model around them.
- ``join``: rebuilding θ from K accumulators (bytes on the wire, seconds)
  against replaying the updates one by one.
- ``learning``: one node, the synthetic task of tests/training/test_learning.py,
  the same number of steps with per-update seeds, a uniform pool and an
  importance-sampled pool (K = 4096 and a small K = 64), held-out accuracy and
  loss at the end. Single runs: differences of a few points are noise.

This module knows nothing of the network; it measures, it does not assert.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

import torch

from seedfl.bench.replay import shapes_for
from seedfl.core.codecs import CodecConfig, make_codec
from seedfl.core.config import ModelConfig, SwarmConfig, TaskConfig, ZOConfig
from seedfl.core.pool import PoolAccumulators, rebuild_
from seedfl.core.rule import LearningRate, apply_coalesced_
from seedfl.core.seeds import pool_seeds, uniform_pool_index, update_seed

_KEY = bytes(range(16))
_PEERS = [bytes([i]) * 16 for i in range(1, 9)]
_TASK = TaskConfig(template="{text}=", verbalizer=(("0", "n"), ("1", "y")), max_length=16)


def _codes(rng: random.Random, n: int) -> bytes:
    # |q| around 40 (g ≈ 0.03 in log8): the magnitudes the synthetic task produces.
    return bytes((rng.randint(20, 60) * rng.choice((1, -1))) & 0xFF for _ in range(n))


def _drain(params: list[torch.Tensor], acc: PoolAccumulators | None, seeds: list[int],
           backlog: list[tuple[bytes, int, bytes]], lr: LearningRate) -> int:
    """Apply one backlog the way ``Engine.apply_many`` does; return regenerations."""
    codec = make_codec(CodecConfig())
    if acc is None:
        terms = [(update_seed(_KEY, o, first + i), -lr.at(first + i) * codec.decode(c))
                 for o, first, codes in backlog for i, c in enumerate(codes)]
        return apply_coalesced_(params, terms)
    merged: dict[int, int] = {}
    for o, first, codes in backlog:
        slots = [uniform_pool_index(_KEY, o, first + i, acc.size) for i in range(len(codes))]
        for k, d in acc.add_batch(first, codes, slots).items():
            merged[k] = merged.get(k, 0) + d
    return apply_coalesced_(params, [(seeds[k], -acc.value_of(d)) for k, d in merged.items()])


def bench_replay_coalescing(n_params: int, pool_size: int = 1024,
                            backlogs: tuple[int, ...] = (1, 8, 64, 512),
                            min_updates: int = 512) -> dict[str, Any]:
    lr = LearningRate(ZOConfig())
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen) * 0.02 for s in shapes_for(n_params)]
    seeds = pool_seeds(_KEY, pool_size)
    rng = random.Random(0)
    rows: dict[str, Any] = {}
    for b in backlogs:
        drains = max(1, min_updates // (8 * b))
        row: dict[str, Any] = {"pending_updates": 8 * b}
        for mode in ("update", "pool"):
            acc = PoolAccumulators(pool_size, make_codec(CodecConfig()), lr) \
                if mode == "pool" else None
            seq, regen = 0, 0
            t0 = time.perf_counter()
            for _ in range(drains):
                backlog = [(o, seq, _codes(rng, b)) for o in _PEERS]
                regen += _drain(params, acc, seeds, backlog, lr)
                seq += b
            dt = time.perf_counter() - t0
            n = drains * 8 * b
            row[mode] = {"updates": n, "regenerations": regen, "seconds": dt,
                         "updates_per_s": n / dt, "updates_per_regeneration": n / regen}
        row["speedup_pool_vs_update"] = (row["pool"]["updates_per_s"]
                                         / row["update"]["updates_per_s"])
        rows[str(b)] = row
    return {"n_params": n_params, "pool_size": pool_size, "peers": 8, "by_backlog": rows}


def bench_join(n_params: int, pool_size: int = 1024, updates: int = 4096) -> dict[str, Any]:
    lr = LearningRate(ZOConfig())
    acc = PoolAccumulators(pool_size, make_codec(CodecConfig()), lr)
    rng = random.Random(1)
    per = updates // 8
    backlog = [(o, 0, _codes(rng, per)) for o in _PEERS]
    for o, first, codes in backlog:
        acc.add_batch(first, codes, [uniform_pool_index(_KEY, o, first + i, pool_size)
                                     for i in range(per)])
    blob = acc.to_bytes()
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen) * 0.02 for s in shapes_for(n_params)]
    t0 = time.perf_counter()
    regen = rebuild_(params, acc.values(), pool_seeds(_KEY, pool_size))
    rebuild_s = time.perf_counter() - t0
    # Replay cost measured on a sample of updates, extrapolated per update.
    sample = 64
    t0 = time.perf_counter()
    _drain(params, None, [], [(o, 0, c[: sample // 8]) for o, _, c in backlog], lr)
    per_update_s = (time.perf_counter() - t0) / sample
    return {"n_params": n_params, "pool_size": pool_size, "updates_in_history": 8 * per,
            "snapshot_bytes": len(blob), "exact_state_bytes": len(acc.to_exact_bytes()),
            "log_bytes": 8 * per, "rebuild_regenerations": regen, "rebuild_seconds": rebuild_s,
            "replay_seconds_estimate": per_update_s * 8 * per,
            "replay_seconds_per_update": per_update_s}


def _train(cfg: SwarmConfig, at: tuple[int, ...], node: bytes) -> dict[str, Any]:
    from seedfl.training.data import Example, split_holdout
    from seedfl.training.engine import Engine
    from seedfl.training.evaluate import evaluate
    from seedfl.training.model import load_swarm_model
    from seedfl.training.task import Task

    rng = random.Random(0)
    examples = []
    for i in range(384):
        letters = "abcdef" if i % 2 else "ghijkl"
        text = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
        examples.append(Example(text=text, label=str(i % 2)))
    train, held_out = split_holdout(examples, 1 / 3, seed=0)
    bundle = load_swarm_model(cfg)
    task = Task.from_config(cfg.task, bundle.tokenizer)
    engine = Engine(cfg, bundle, task, train, node)
    curve: dict[str, Any] = {}
    seconds = 0.0
    for steps in at:
        t0 = time.perf_counter()
        while engine.stats.steps < steps:
            engine.step()
        seconds += time.perf_counter() - t0
        result = evaluate(bundle, task, held_out, batch_size=64)
        curve[str(steps)] = {"accuracy": result.accuracy, "loss": result.loss}
    out = {"by_steps": curve, "step_seconds": seconds / at[-1],
           "regenerations": engine.stats.regenerations}
    if engine.pool is not None:
        out["distinct_slots"] = sum(1 for c in engine.pool.counts if c)
    return out


def bench_pool_learning(at: tuple[int, ...] = (25, 50, 100), nodes: int = 3) -> dict[str, Any]:
    """Held-out accuracy and loss after each of ``at`` node-steps, per mode, averaged
    over ``nodes`` single-node runs with different node ids (data order, slots)."""
    base = SwarmConfig(model=ModelConfig(name="seedfl:tiny", trainable=("*",)), task=_TASK,
                       zo=ZOConfig(eps=1e-3, lr=2e-3, batch_size=16))
    modes = {
        "update": base.zo,
        "pool_uniform_4096": replace(base.zo, seeds="pool", pool_size=4096),
        "pool_importance_4096": replace(base.zo, seeds="pool", pool_size=4096,
                                        pool_sampling="importance"),
        "pool_uniform_64": replace(base.zo, seeds="pool", pool_size=64),
        "pool_importance_64": replace(base.zo, seeds="pool", pool_size=64,
                                      pool_sampling="importance"),
    }
    runs: dict[str, Any] = {}
    for name, zo in modes.items():
        per_node = [_train(replace(base, zo=zo), at, bytes([0xA0 + i]) * 16)
                    for i in range(nodes)]
        runs[name] = {
            str(s): {key: sum(r["by_steps"][str(s)][key] for r in per_node) / nodes
                     for key in ("accuracy", "loss")} for s in at}
        runs[name]["runs"] = per_node
    return {"steps": list(at), "nodes": nodes, "task": "synthetic letters (test_learning)",
            "by_mode": runs}


def bench_pool(quick: bool = False) -> dict[str, Any]:
    """All three measurements; ``quick`` shrinks sizes for a smoke run."""
    torch_threads = torch.get_num_threads()
    n_params = 1_000_000 if quick else 8_000_000
    return {
        "torch_threads": torch_threads,
        "replay": bench_replay_coalescing(n_params, backlogs=(1, 8, 64) if quick
                                          else (1, 8, 64, 512)),
        "join": bench_join(n_params, updates=1024 if quick else 8192),
        "learning": bench_pool_learning(at=(20, 40) if quick else (25, 50, 100),
                                        nodes=1 if quick else 3),
    }
