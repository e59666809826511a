"""Per-tensor scale of the direction (``zo.scale``): z_t becomes s_t · z_t.

A model's trainable tensors can differ in magnitude by 20x or more (SmolLM2's
final norm weights are ~1.7, its head rows ~0.1). One ε and one η for all of
them either moves the small ones by more than their size (diverges) or the
large ones by nothing (does not move). ``rms0`` fixes

    s_t = 2 ** (round(4 · log2 RMS(θ₀_t)) / 4)

from the tensor at θ₀: its root-mean-square (float64 over the exact fp32
values, identical on every node that starts from the same θ₀, which the model
fingerprint checks) rounded to a quarter octave, so that the rule reads as
"this tensor moves in steps of about its own size". A tensor whose RMS is zero
or not finite gets s_t = 1. ``none`` is s_t = 1 for all (the rule before
scales). Scales never travel: every node computes them from θ₀ and the config.

The same s_t multiplies z_t in the estimate (θ ± ε·s·z) and in every update
(θ − η·ĝ·s·z), so the update remains a step along the direction that was
measured, and η = 0 still changes nothing. This module knows nothing of
models or seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["SCALE_RULES", "tensor_scales"]

SCALE_RULES: tuple[str, ...] = ("none", "rms0")


def _rms0(p: torch.Tensor) -> float:
    x = p.detach().to("cpu", torch.float64).reshape(-1)
    if x.numel() == 0:
        return 1.0
    rms = math.sqrt(float(torch.dot(x, x)) / x.numel())
    if not math.isfinite(rms) or rms <= 0.0:
        return 1.0
    return float(2.0 ** (round(4.0 * math.log2(rms)) / 4.0))


def tensor_scales(params: Sequence[torch.Tensor], rule: str) -> tuple[float, ...]:
    """s_t for every tensor of θ₀ (call it before any update is applied)."""
    if rule not in SCALE_RULES:
        raise ValueError(f"unknown scale rule {rule!r}; expected one of {SCALE_RULES}")
    if rule == "none":
        return tuple(1.0 for _ in params)
    return tuple(_rms0(p) for p in params)
