"""The update rule (DESIGN §2): θ ← θ − η(seq) · decode(code) · z(S).

- ``LearningRate(cfg).at(seq)``: η as a pure function of the update's seq and
  the swarm config (``lr``, ``schedule`` constant | linear | cosine, ``warmup``,
  ``horizon``). Warmup ramps linearly, η = lr·(seq+1)/warmup for seq < warmup;
  linear and cosine then decay to 0 at seq = horizon and stay there.
- ``apply_update_(params, seed, coef, kind, scales)``: θ_t += coef · s_t · z_t(seed)
  for every tensor t in canonical order (s_t = 1 without scales; core/scales.py).
  The caller passes coef = −η(seq) · decode(code).
- ``apply_coalesced_(params, terms, kind)``: several (seed, coef) terms at once;
  terms sharing a seed (pool mode) are summed first (``math.fsum``: the sum is
  correctly rounded, so it does not depend on arrival order) and regenerated once.
  The distinct seeds are then applied in one pass over θ (``fused.add_terms_``):
  bit-identical to applying them one at a time in first-appearance order.

Coefficients are rounded to float32 when applied (see ``perturbation``). This
module knows nothing of codes, origins or where the terms came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch

from seedfl.core.fused import add_terms_
from seedfl.core.perturbation import add_directions_
from seedfl.core.scales import Scale

SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


class ScheduleConfig(Protocol):
    """What the rule reads from the ``[zo]`` table."""

    @property
    def lr(self) -> float: ...
    @property
    def schedule(self) -> str: ...
    @property
    def warmup(self) -> int: ...
    @property
    def horizon(self) -> int: ...


class LearningRate:
    """η(seq): identical on every node for the same config and seq."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; expected one of {SCHEDULES}")
        if cfg.lr < 0 or cfg.warmup < 0:
            raise ValueError("lr and warmup must be >= 0")
        if cfg.schedule != "constant" and cfg.horizon <= cfg.warmup:
            raise ValueError(
                f"a {cfg.schedule} schedule needs horizon > warmup "
                f"(got horizon={cfg.horizon}, warmup={cfg.warmup})"
            )
        self.lr = float(cfg.lr)
        self.schedule = cfg.schedule
        self.warmup = cfg.warmup
        self.horizon = cfg.horizon

    def at(self, seq: int) -> float:
        if seq < 0:
            raise ValueError(f"seq must be >= 0, got {seq}")
        if seq < self.warmup:
            return self.lr * (seq + 1) / self.warmup
        if self.schedule == "constant":
            return self.lr
        progress = min(1.0, (seq - self.warmup) / (self.horizon - self.warmup))
        if self.schedule == "linear":
            return self.lr * (1.0 - progress)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_update_(
    params: Sequence[torch.Tensor], seed: int, coef: float, kind: str = "rademacher",
    scales: Sequence[Scale] | None = None,
) -> None:
    """θ_t += coef · s_t · z_t(seed) for all t (in place; coef == 0 changes nothing)."""
    add_directions_(params, seed, coef, kind, scales)


def coalesce(terms: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """One (seed, Σ coef) per distinct seed, in order of first appearance."""
    groups: dict[int, list[float]] = {}
    for seed, coef in terms:
        groups.setdefault(seed, []).append(coef)
    return [(seed, math.fsum(coefs)) for seed, coefs in groups.items()]


def apply_coalesced_(
    params: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]], kind: str = "rademacher",
    scales: Sequence[Scale] | None = None,
) -> int:
    """Apply Σ coef · s_t · z_t(seed) over all terms; returns the number of regenerations.

    Terms of one seed are summed before the scale applies (per tensor, at the end);
    all of them go through θ in one pass (core/fused.py), zero sums are skipped.
    """
    live = [(seed, coef) for seed, coef in coalesce(terms) if coef != 0.0]
    add_terms_(params, live, kind, scales)
    return len(live)
