"""Step overhead: one ZO step against the time of its two forward passes (DESIGN §12).

Measured in one run on one model and batch:
- ``forward``: one forward pass with the loss, inference mode;
- ``seedfl``: our full step (functional ±εz perturbation, two forwards, encode,
  apply the update);
- ``mezo``: the MeZO-style baseline (global torch seed, ``torch.normal`` per
  tensor, perturb +ε, −2ε, restore +ε, then the update), in place.

The ratios ``step / (2 × forward)`` are what the README reports; absolute
seconds are printed for context only.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from seedfl.bench.models import bench_bundle, bench_examples
from seedfl.core.codecs import make_codec
from seedfl.core.config import SwarmConfig
from seedfl.core.rule import apply_update_
from seedfl.training.estimator import Estimator
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


def bench_step(cfg: SwarmConfig, quick: bool = False, repeats: int = 2) -> dict[str, Any]:
    bundle = bench_bundle(cfg, quick)
    task = Task.from_config(cfg.task, bundle.tokenizer)
    examples = bench_examples(cfg, bundle, cfg.zo.batch_size)
    encoded = task.encode(examples)
    estimator = Estimator(bundle, task, cfg.zo.eps, kind=cfg.zo.perturbation)
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

    def mezo_step() -> None:
        seed_box[0] += 1
        _mezo_step(bundle.params, lambda: task.loss(bundle.model, encoded), cfg.zo.eps,
                   0.0, seed_box[0])

    t_fwd = _time(forward, repeats)
    t_seedfl = _time(seedfl_step, repeats)
    t_mezo = _time(mezo_step, repeats)
    return {
        "model_params": sum(p.numel() for p in bundle.model.parameters()),
        "trainable_params": sum(p.numel() for p in bundle.params),
        "batch": [len(examples), int(encoded_len(encoded))],
        "threads": torch.get_num_threads(),
        "forward_s": t_fwd,
        "seedfl_step_s": t_seedfl,
        "mezo_step_s": t_mezo,
        "seedfl_step_over_2_forwards": t_seedfl / (2 * t_fwd),
        "mezo_step_over_2_forwards": t_mezo / (2 * t_fwd),
    }


def encoded_len(encoded: Any) -> int:
    ids = getattr(encoded, "input_ids", None)
    return int(ids.shape[1]) if ids is not None else 0
