"""Accuracy after the same number of node-steps: one node alone vs a swarm of three.

Arms, each from the same θ₀, every node taking S steps of its own:

- ``single``: one node, its own shard, S steps (S updates applied);
- ``swarm_update``: 3 nodes, disjoint shards, per-(origin, seq) seeds; every
  node applies every update, so each replica ends with 3·S updates;
- ``swarm_pool_uniform`` / ``swarm_pool_importance``: the same swarm with a
  seed pool of ``POOL_SIZE`` slots (DESIGN §5), uniform or importance-sampled.

The swarm is simulated in one process with one ``Engine`` per node (own shard,
own node id, own copy of the model): in each round every node steps at the
same θ, then applies the other nodes' updates of that round with
``apply_many``. A node's update is therefore computed without the other
nodes' updates of its round (staleness exactly nodes − 1 updates, the same
in every round), and nothing is delayed or lost by a network. Node 0
of the single arm is the same node (id, shard, batch order) as node 0 of the
swarms, and the replica evaluated is node 0's.

``quick`` runs the tiny random model on the synthetic letters task of
tests/training/test_learning.py (all parameters train; seconds). Otherwise
the demo recipe (seedfl/demo_recipe.py): SmolLM2-135M, Rotten Tomatoes, only
``model.norm.weight`` trains, S = ``steps_per_node``, 400 held-out sentences.
That is 600 steps plus 5 evaluations: at 4-6 s per step on one idle core
about an hour; one to two on a busy machine (measured 5-13 s per step and
10 s per 16 held-out examples on the shared 2-core reference machine).
Single runs: differences of a few points are noise.

This module measures; it asserts nothing and knows nothing of the network.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seedfl.core.config import ModelConfig, SwarmConfig, TaskConfig, ZOConfig, parse_config
from seedfl.core.updates import UpdateBatch
from seedfl.training.data import Example, load_examples, split_holdout
from seedfl.training.engine import Engine
from seedfl.training.evaluate import EvalResult, evaluate
from seedfl.training.model import label_words, load_model
from seedfl.training.task import Task

NODES = 3
POOL_SIZE = 1024
QUICK_STEPS = 20
NODE_IDS = [bytes([0xA0 + i]) * 16 for i in range(NODES)]
SIMULATION = (
    "one process, one Engine (model copy, shard, node id) per node, synchronous rounds: "
    "every node steps at the same θ, then applies the others' updates of the round; "
    f"staleness exactly nodes-1 = {NODES - 1} updates per step, no network delay or loss")

_SYNTHETIC_TASK = TaskConfig(template="{text}=", verbalizer=(("0", "n"), ("1", "y")),
                             max_length=16)


@dataclass
class _Setup:
    cfg: SwarmConfig
    shards: list[list[Example]]  # one per node, disjoint
    held_out: list[Example]
    eval_batch: int
    task_name: str


def _synthetic(n: int) -> list[Example]:
    # The letters task of tests/training/test_learning.py: "abcdef" texts are 1, "ghijkl" 0.
    rng = random.Random(0)
    out = []
    for i in range(n):
        letters = "abcdef" if i % 2 else "ghijkl"
        text = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
        out.append(Example(text=text, label=str(i % 2)))
    return out


def _quick_setup(holdout: int | None) -> _Setup:
    cfg = SwarmConfig(model=ModelConfig(name="seedfl:tiny", trainable=("*",)),
                      task=_SYNTHETIC_TASK, zo=ZOConfig(eps=1e-3, lr=2e-3, batch_size=16))
    train, held_out = split_holdout(_synthetic(384), 1 / 3, seed=0)
    return _Setup(cfg, [train[i::NODES] for i in range(NODES)], held_out[:holdout],
                  eval_batch=64, task_name="synthetic letters (tests/training/test_learning.py)")


def _full_setup(work: Path, holdout: int | None) -> _Setup:
    from seedfl.demo_recipe import DEMO_RECIPE, demo_config_text
    from seedfl.training.assets import write_sentiment_splits

    cfg = parse_config(demo_config_text())
    # The demo's own splits; a smaller holdout takes the head of the same held-out file.
    splits = write_sentiment_splits(work, n_train_per_node=DEMO_RECIPE["train_per_node"],
                                    n_nodes=NODES, n_holdout=DEMO_RECIPE["holdout"], seed=0)
    shards = [load_examples(splits[f"node{i}"], cfg.task) for i in range(NODES)]
    held_out = load_examples(splits["holdout"], cfg.task)[:holdout]
    return _Setup(cfg, shards, held_out, eval_batch=32,
                  task_name="demo recipe: SmolLM2-135M, Rotten Tomatoes, model.norm.weight")


def _result(r: EvalResult) -> dict[str, Any]:
    return {"accuracy": r.accuracy, "loss": r.loss}


def _run_arm(setup: _Setup, zo: ZOConfig, nodes: int, steps: int) -> dict[str, Any]:
    """Train ``nodes`` engines for ``steps`` rounds; evaluate node 0's replica."""
    cfg = dataclasses.replace(setup.cfg, zo=zo)
    engines = []
    for i in range(nodes):
        bundle = load_model(cfg.model, label_words=label_words(cfg.task))
        task = Task.from_config(cfg.task, bundle.tokenizer)
        engines.append(Engine(cfg, bundle, task, setup.shards[i], NODE_IDS[i]))
    t0 = time.perf_counter()
    for _ in range(steps):
        mine: Sequence[UpdateBatch] = [e.step() for e in engines]
        for i, e in enumerate(engines):
            e.apply_many([b for j, b in enumerate(mine) if j != i])
    seconds = time.perf_counter() - t0
    head = engines[0]
    projections = [e.projection() for e in engines]
    after = evaluate(head.bundle, head.task, setup.held_out, setup.eval_batch)
    out: dict[str, Any] = {
        "nodes": nodes, "own_steps_per_node": steps,
        "updates_applied": head.stats.applied, **_result(after),
        "train_seconds": seconds, "seconds_per_node_step": seconds / (nodes * steps),
        # Replicas hold the same updates applied in different orders: equal up to rounding.
        "replica_projection_spread": max(projections) - min(projections),
        "regenerations": head.stats.regenerations,
    }
    if head.pool is not None:
        out["distinct_slots"] = sum(1 for c in head.pool.counts if c)
    return out


def _ratio(num: float, den: float) -> float | None:
    # A ratio of gains only means something when the reference arm gained.
    return num / den if den > 0 else None


def bench_learning(quick: bool, steps: int | None = None,
                   holdout: int | None = None) -> dict[str, Any]:
    """Held-out accuracy before and after each arm, and gain ratios between arms.

    ``steps`` overrides S (own steps per node); ``holdout`` evaluates only the
    first examples of the held-out split (smoke runs). Gains are after − before;
    a ratio is None when its denominator's gain is not positive.
    """
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seedfl-bench-learning-") as tmp:
        setup = _quick_setup(holdout) if quick else _full_setup(Path(tmp), holdout)
    if steps is None:
        if quick:
            steps = QUICK_STEPS
        else:
            from seedfl.demo_recipe import DEMO_RECIPE

            steps = DEMO_RECIPE["steps_per_node"]
    if steps < 1:
        raise ValueError("steps must be >= 1")
    bundle = load_model(setup.cfg.model, label_words=label_words(setup.cfg.task))
    before = evaluate(bundle, Task.from_config(setup.cfg.task, bundle.tokenizer),
                      setup.held_out, setup.eval_batch)
    del bundle
    zo = setup.cfg.zo
    pool = dataclasses.replace(zo, seeds="pool", pool_size=POOL_SIZE)
    arms = {
        "single": _run_arm(setup, dataclasses.replace(zo, seeds="update"), 1, steps),
        "swarm_update": _run_arm(setup, dataclasses.replace(zo, seeds="update"), NODES, steps),
        "swarm_pool_uniform": _run_arm(
            setup, dataclasses.replace(pool, pool_sampling="uniform"), NODES, steps),
        "swarm_pool_importance": _run_arm(
            setup, dataclasses.replace(pool, pool_sampling="importance"), NODES, steps),
    }
    acc0 = before.accuracy or 0.0
    for arm in arms.values():
        arm["accuracy_gain"] = (arm["accuracy"] or 0.0) - acc0
        arm["loss_drop"] = before.loss - arm["loss"]
    gain = {name: arm["accuracy_gain"] for name, arm in arms.items()}
    drop = {name: arm["loss_drop"] for name, arm in arms.items()}

    def ratios(d: dict[str, float]) -> dict[str, float | None]:
        return {
            "swarm_vs_single": _ratio(d["swarm_update"], d["single"]),
            "pool_uniform_vs_update": _ratio(d["swarm_pool_uniform"], d["swarm_update"]),
            "pool_importance_vs_update": _ratio(d["swarm_pool_importance"],
                                                d["swarm_update"]),
        }

    return {
        "task": setup.task_name, "model": setup.cfg.model.name, "quick": quick,
        "nodes": NODES, "steps_per_node": steps, "held_out": before.n,
        "pool_size": POOL_SIZE, "simulation": SIMULATION,
        "before": _result(before), "arms": arms,
        "accuracy_gain_ratios": ratios(gain), "loss_drop_ratios": ratios(drop),
        "total_seconds": time.perf_counter() - t_start,
    }
