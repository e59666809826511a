"""Step overhead: one ZO step against the time of its two forward passes (DESIGN §12).

Measured in one run on one model and batch:
- ``forward``: one forward pass with the loss, inference mode;
- ``seedfl``: our full step (functional ±εz perturbation, two forwards, encode,
  apply the update);
- ``mezo``: the MeZO-style baseline (global torch seed, ``torch.normal`` per
  tensor, perturb +ε, −2ε, restore +ε, then the update), in place.

The ratios ``step / (2 × forward)`` are what the README reports; absolute
seconds are printed for context only.

``selections`` repeats the comparison for two trainable sets, each with
``mezo_over_seedfl`` (baseline seconds / ours): ``all`` parameters, and
``top2_layers_norm`` (the top two decoder layers and the final norm), where our
step takes the frozen layers' output from the prefix cache (prefix.py; warm: the
batch's rows were seen before; ``seedfl_cold_step_s``: none were) and MeZO runs
its two full forwards.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from seedfl.bench.models import bench_bundle, bench_examples
from seedfl.core.codecs import make_codec
from seedfl.core.config import SwarmConfig
from seedfl.core.rule import apply_update_
from seedfl.training.estimator import Estimator
from seedfl.training.prefix import FrozenPrefix, find_layers
from seedfl.training.task import Task


def _time(fn: Any, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, caches
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _mezo_step(params: list[torch.Tensor], loss_fn: Any, eps: float, lr: float, seed: int) -> None:
    def perturb(scale: float) -> None:
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(0.0, 1.0, size=p.shape, dtype=p.dtype)
            p.add_(z, alpha=scale)

    perturb(eps)
    lp = loss_fn()
    perturb(-2 * eps)
    lm = loss_fn()
    perturb(eps)
    g = (lp - lm) / (2 * eps)
    perturb(-lr * g)


def _run(cfg: SwarmConfig, quick: bool, repeats: int, cached: bool) -> dict[str, Any]:
    """Seconds of one forward, our step and the MeZO step for ``cfg.model.trainable``."""
    bundle = bench_bundle(cfg, quick)
    task = Task.from_config(cfg.task, bundle.tokenizer)
    examples = bench_examples(cfg, bundle, cfg.zo.batch_size)
    encoded = task.encode(examples)
    prefix = FrozenPrefix.for_bundle(bundle, cfg.zo.prefix_cache_mb) if cached else None
    estimator = Estimator(bundle, task, cfg.zo.eps, kind=cfg.zo.perturbation, prefix=prefix)
    codec = make_codec(cfg.codec)
    seed_box = [1]

    def forward() -> None:
        task.loss(bundle.model, encoded)

    def seedfl_step() -> None:
        seed_box[0] += 1
        est = estimator.estimate(encoded, seed_box[0])
        code, _ = codec.encode(est.g, seed_box[0])
        codec.decode(code)
        # A negligible coefficient keeps the weights (nearly) fixed across
        # repeats while the apply does all of its work.
        apply_update_(bundle.params, seed_box[0], -1e-30, cfg.zo.perturbation)
        bundle.sync_to_model()

    def cold_step() -> None:  # every row of the batch new to the cache
        assert prefix is not None
        prefix.clear()
        seedfl_step()

    def mezo_step() -> None:
        seed_box[0] += 1
        _mezo_step(bundle.params, lambda: task.loss(bundle.model, encoded), cfg.zo.eps,
                   0.0, seed_box[0])

    t_fwd = _time(forward, repeats)
    t_seedfl = _time(seedfl_step, repeats)
    t_mezo = _time(mezo_step, repeats)
    row: dict[str, Any] = {
        "model_params": sum(p.numel() for p in bundle.model.parameters()),
        "trainable_params": sum(p.numel() for p in bundle.params),
        "batch": [len(examples), int(encoded_len(encoded))],
        "forward_s": t_fwd,
        "seedfl_step_s": t_seedfl,
        "mezo_step_s": t_mezo,
        "mezo_over_seedfl": t_mezo / t_seedfl,
    }
    if prefix is not None:
        row["prefix_layers_skipped"] = prefix.k if prefix.enabled else 0
        row["prefix_cached_rows"] = prefix.rows
        if prefix.enabled:
            row["seedfl_cold_step_s"] = _time(cold_step, repeats)
            row["mezo_over_seedfl_cold"] = t_mezo / row["seedfl_cold_step_s"]
    return row


def top_layers_selection(cfg: SwarmConfig, quick: bool, top: int = 2) -> tuple[str, ...]:
    """Trainable patterns for the top ``top`` decoder layers and the final norm."""
    bundle = bench_bundle(cfg, quick)
    layers = find_layers(bundle.model)
    if layers is None:
        raise RuntimeError("the bench model has no decoder layer stack")
    name = next(n for n, m in bundle.model.named_modules() if m is layers)
    parent = name.rpartition(".")[0]
    picks = tuple(f"{name}.{i}.*" for i in range(len(layers) - top, len(layers)))
    return (*picks, f"{parent + '.' if parent else ''}norm.*")


def bench_step(cfg: SwarmConfig, quick: bool = False, repeats: int = 2) -> dict[str, Any]:
    """The all-parameters step (top-level keys), and ``selections``: all parameters, and
    the top-2 layers + final norm with the frozen-prefix cache, each against MeZO."""
    top = top_layers_selection(cfg, quick)
    full = _run(cfg, quick, repeats, cached=True)
    top_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, trainable=top))
    top_row = {"trainable": list(top), **_run(top_cfg, quick, repeats, cached=True)}
    return {
        "model_params": full["model_params"],
        "trainable_params": full["trainable_params"],
        "batch": full["batch"],
        "threads": torch.get_num_threads(),
        "forward_s": full["forward_s"],
        "seedfl_step_s": full["seedfl_step_s"],
        "mezo_step_s": full["mezo_step_s"],
        "seedfl_step_over_2_forwards": full["seedfl_step_s"] / (2 * full["forward_s"]),
        "mezo_step_over_2_forwards": full["mezo_step_s"] / (2 * full["forward_s"]),
        "selections": {"all": {"trainable": list(cfg.model.trainable), **full},
                       "top2_layers_norm": top_row},
    }


def encoded_len(encoded: Any) -> int:
    ids = getattr(encoded, "input_ids", None)
    return int(ids.shape[1]) if ids is not None else 0
