"""Learning curves: held-out accuracy against wall-clock and node-steps, four arms.

Arms, each from the same θ₀ on the same trainable parameters and data:

- ``seedfl_1``: one node, the recipe's rule (per-tensor scale, schedule), S steps;
- ``seedfl_3``: three nodes, disjoint shards, the same rule with the swarm-size
  rule (each step counts 1/N), S steps each;
- ``mezo``: the MeZO-style baseline: one node, Gaussian z, one ε and η for every
  tensor (no scale), constant η; run at three learning rates (the recipe's lr
  x 1, 0.1, 0.01) and the best final accuracy is the curve shown (every run is
  in the JSON): the strongest version of the baseline, not the weakest;
- ``adamw``: first-order backprop (torch AdamW, lr 1e-3) on the same tensors,
  the same batches, S steps: what ZO is trying to approach.

Every arm runs on the same forward: frozen decoder layers cached once per
example (training/prefix.py) and only the label rows of the head computed, so
the clocks compare the rules, not the implementations (``bench step`` measures
what the cache saves against a MeZO implementation that runs every layer).

Simulation (``SIMULATION``): one process, one Engine (model copy, shard, node
id) per node, synchronous rounds: every node steps at the same θ, then applies
the others' updates of that round; staleness exactly N − 1 updates, no
network delay or loss. Wall-clock of the swarm counts a round as the slowest
node's step plus its applies (the nodes would run in parallel); evaluation time
is excluded from every clock. ``node_steps`` counts every node's steps.

``quick`` runs the tiny random model on a synthetic letters task (seconds);
otherwise the demo recipe (seedfl/demo_recipe.py) on SmolLM2-135M and the 400
held-out Rotten Tomatoes sentences. This module measures; it asserts nothing.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seedfl.core.config import ModelConfig, SwarmConfig, TaskConfig, ZOConfig, parse_config
from seedfl.core.updates import UpdateBatch
from seedfl.training.data import Example, batches, load_examples, split_holdout
from seedfl.training.engine import DivergedError, Engine
from seedfl.training.evaluate import evaluate
from seedfl.training.model import ModelBundle, load_swarm_model
from seedfl.training.task import Task

NODES = 3
QUICK_STEPS = 20
CURVE_POINTS = 10
ADAMW_LR = 1e-3
# The MeZO baseline is unscaled, so its best lr sits far below the recipe's once
# the recipe scales z (act0 at 0.3: MeZO's best measured was 3e-4, and at
# 3e-1..3e-3 it ended at 51-67%): the sweep reaches three decades down.
MEZO_LR_FACTORS = (1.0, 0.1, 0.01, 0.001)
NODE_IDS = [bytes([0xA0 + i]) * 16 for i in range(NODES)]
SIMULATION = (
    "one process, one Engine (model copy, shard, node id) per node, synchronous rounds: "
    "every node steps at the same θ, then applies the others' updates of the round; "
    f"staleness exactly nodes-1 = {NODES - 1} updates per step, no network delay or loss; "
    "a round's wall-clock is its slowest node's step plus applies (parallel nodes); "
    "evaluation is not on any clock")

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
    # "abcdef" texts are 1, "ghijkl" 0 (the letters task of tests/training/test_learning.py).
    rng = random.Random(0)
    out = []
    for i in range(n):
        letters = "abcdef" if i % 2 else "ghijkl"
        text = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
        out.append(Example(text=text, label=str(i % 2)))
    return out


def _quick_setup(holdout: int | None) -> _Setup:
    zo = ZOConfig(eps=1e-3, lr=2e-3, batch_size=16, scale="rms0", swarm_scale="mean")
    cfg = SwarmConfig(model=ModelConfig(name="seedfl:tiny", trainable=("*",)),
                      task=_SYNTHETIC_TASK, zo=zo)
    train, held_out = split_holdout(_synthetic(384), 1 / 3, seed=0)
    return _Setup(cfg, [train[i::NODES] for i in range(NODES)], held_out[:holdout],
                  eval_batch=64, task_name="synthetic letters (tests/training/test_learning.py)")


def _full_setup(work: Path, holdout: int | None, steps: int) -> _Setup:
    from seedfl.demo.recipe import DEMO_RECIPE, demo_config_text
    from seedfl.training.assets import write_sentiment_splits

    cfg = parse_config(demo_config_text(steps_per_node=steps))
    splits = write_sentiment_splits(work, n_train_per_node=DEMO_RECIPE["train_per_node"],
                                    n_nodes=NODES, n_holdout=DEMO_RECIPE["holdout"], seed=0)
    shards = [load_examples(splits[f"node{i}"], cfg.task) for i in range(NODES)]
    held_out = load_examples(splits["holdout"], cfg.task)[:holdout]
    return _Setup(cfg, shards, held_out, eval_batch=32,
                  task_name="demo recipe: SmolLM2-135M, Rotten Tomatoes, best prompt, "
                            "final norm + label rows")


class _Curve:
    """Points (own steps, node-steps, seconds, accuracy, loss) of one arm."""

    def __init__(self, setup: _Setup, steps: int) -> None:
        self.setup, self.points = setup, []  # type: ignore[var-annotated]
        self.every = max(1, steps // CURVE_POINTS)
        self.prefix: Any = None

    def record(self, bundle: ModelBundle, task: Task, own: int, nodes: int,
               seconds: float) -> None:
        r = evaluate(bundle, task, self.setup.held_out, self.setup.eval_batch, prefix=self.prefix)
        self.points.append({"own_steps": own, "node_steps": own * nodes,
                            "seconds": round(seconds, 3), "accuracy": r.accuracy,
                            "loss": r.loss})


def _engines(setup: _Setup, cfg: SwarmConfig, nodes: int) -> list[Engine]:
    engines = []
    for i in range(nodes):
        bundle = load_swarm_model(cfg)
        task = Task.from_config(cfg.task, bundle.tokenizer)
        engines.append(Engine(cfg, bundle, task, setup.shards[i], NODE_IDS[i]))
    return engines


def _zo_arm(setup: _Setup, zo: ZOConfig, nodes: int, steps: int) -> dict[str, Any]:
    cfg = dataclasses.replace(setup.cfg, zo=zo)
    engines = _engines(setup, cfg, nodes)
    head = engines[0]
    curve = _Curve(setup, steps)
    curve.prefix = head.estimator.prefix
    curve.record(head.bundle, head.task, 0, nodes, 0.0)
    clock = 0.0
    diverged = None
    for step in range(1, steps + 1):
        mine: list[UpdateBatch] = []
        spent = []
        try:
            for e in engines:
                t0 = time.perf_counter()
                mine.append(e.step(contributors=nodes))
                spent.append(time.perf_counter() - t0)
        except DivergedError as exc:
            # A result, not a failure: the unscaled baseline at the recipe's lr is
            # expected to blow up. The curve ends where the run stopped, at chance.
            diverged = str(exc)
            curve.record(head.bundle, head.task, step, nodes, clock)
            break
        for i, e in enumerate(engines):
            t0 = time.perf_counter()
            e.apply_many([b for j, b in enumerate(mine) if j != i])
            spent[i] += time.perf_counter() - t0
        clock += max(spent)
        if step % curve.every == 0 or step == steps:
            curve.record(head.bundle, head.task, step, nodes, clock)
    projections = [e.projection() for e in engines]
    return {"nodes": nodes, "own_steps_per_node": steps, "lr": zo.lr, "scale": zo.scale,
            "swarm_scale": zo.swarm_scale, "perturbation": zo.perturbation,
            "updates_applied": head.stats.applied, "curve": curve.points,
            "diverged": diverged,
            "replica_projection_spread": max(projections) - min(projections)}


def _adamw_arm(setup: _Setup, steps: int) -> dict[str, Any]:
    cfg = setup.cfg
    engine = _engines(setup, cfg, 1)[0]  # for its cached forward and the same batches
    bundle, task = engine.bundle, engine.task
    params = list(bundle.model_params)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=ADAMW_LR, weight_decay=0.0)
    stream = batches(list(setup.shards[0]), NODE_IDS[0], cfg.zo.batch_size)
    curve = _Curve(setup, steps)
    curve.prefix = engine.estimator.prefix
    curve.record(bundle, task, 0, 1, 0.0)
    clock = 0.0
    try:
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            enc = task.encode(next(stream))
            with torch.enable_grad():
                loss = _loss_tensor(engine, enc)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            clock += time.perf_counter() - t0
            if step % curve.every == 0 or step == steps:
                curve.record(bundle, task, step, 1, clock)
    finally:
        for p in params:
            p.requires_grad_(False)
    return {"nodes": 1, "own_steps_per_node": steps, "lr": ADAMW_LR, "optimizer": "AdamW",
            "curve": curve.points}


def _loss_tensor(engine: Engine, enc: Any) -> torch.Tensor:
    prefix = engine.estimator.prefix
    if prefix is None:
        return engine.task.loss_tensor(engine.bundle.model, enc)
    with prefix.active(enc):
        return engine.task.loss_tensor(engine.bundle.model, enc)


def _final(arm: dict[str, Any]) -> float:
    return float(arm["curve"][-1]["accuracy"] or 0.0)


def bench_learning(quick: bool, steps: int | None = None, holdout: int | None = None,
                   png: str | Path | None = None) -> dict[str, Any]:
    """Curves of the four arms; ``png`` also draws them (accuracy vs seconds and steps)."""
    from seedfl.demo.recipe import DEMO_RECIPE

    t_start = time.perf_counter()
    steps = steps or (QUICK_STEPS if quick else DEMO_RECIPE["steps_per_node"])
    if steps < 1:
        raise ValueError("steps must be >= 1")
    with tempfile.TemporaryDirectory(prefix="seedfl-bench-learning-") as tmp:
        setup = _quick_setup(holdout) if quick else _full_setup(Path(tmp), holdout, steps)
    zo = setup.cfg.zo
    mezo_runs = [_zo_arm(setup, dataclasses.replace(
        zo, scale="none", swarm_scale="none", schedule="constant", perturbation="gaussian",
        lr=zo.lr * f), 1, steps) for f in MEZO_LR_FACTORS]
    arms = {
        "seedfl_1": _zo_arm(setup, zo, 1, steps),
        "seedfl_3": _zo_arm(setup, zo, NODES, steps),
        "mezo": max(mezo_runs, key=lambda r: (r["diverged"] is None, _final(r))),
        "adamw": _adamw_arm(setup, steps),
    }
    start = arms["seedfl_1"]["curve"][0]
    result: dict[str, Any] = {
        "task": setup.task_name, "model": setup.cfg.model.name,
        "trainable": list(setup.cfg.model.trainable), "quick": quick, "nodes": NODES,
        "steps_per_node": steps, "held_out": len(setup.held_out), "simulation": SIMULATION,
        "before": {"accuracy": start["accuracy"], "loss": start["loss"]},
        "arms": arms, "mezo_lr_sweep": {str(r["lr"]): _final(r) for r in mezo_runs},
        "final_accuracy": {name: _final(arm) for name, arm in arms.items()},
        "total_seconds": time.perf_counter() - t_start,
    }
    if png is not None:
        from seedfl.observe.plot import render_curves, to_png

        Path(png).write_bytes(to_png(render_curves(
            {name: arm["curve"] for name, arm in arms.items()})))
        result["png"] = str(png)
    return result
