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

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["MAX_EXPONENT", "SCALE_RULES", "ChannelScale", "Scale", "scales_digest",
           "tensor_scales"]

SCALE_RULES: tuple[str, ...] = ("none", "rms0", "act0")
# |e_i| <= 8: a factor of 256 either way is far more than the channel spread of
# the models measured (SmolLM2's final hidden state: 44x), and it keeps a_t·f_i
# far from float32's subnormal and overflow ranges, where the product would not
# be exact.
MAX_EXPONENT = 8


@dataclass(frozen=True, eq=False)
class ChannelScale:
    """s_t · 2^e: a tensor's base scale times one power of two per element.

    ``exponents`` is an int8 tensor of the tensor's element count (flattened,
    canonical order), each in [-MAX_EXPONENT, MAX_EXPONENT].
    """

    base: float
    exponents: torch.Tensor

    def __post_init__(self) -> None:
        e = self.exponents
        if e.dtype != torch.int8 or e.dim() != 1:
            raise ValueError("ChannelScale.exponents must be a 1-D int8 tensor")
        if e.numel() and int(e.abs().max()) > MAX_EXPONENT:
            raise ValueError(f"ChannelScale exponents must lie in ±{MAX_EXPONENT}")

    def factors(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """2^e as float32 (exact), flattened, on ``device``."""
        return torch.ldexp(torch.ones(self.exponents.numel(), dtype=torch.float32),
                           self.exponents.to(torch.int32)).to(device)


Scale = float | ChannelScale


def scales_digest(scales: Sequence[Scale]) -> bytes:
    """16 bytes that differ when any node would compute a different scale."""
    h = hashlib.blake2b(digest_size=16, person=b"seedfl/scales/v1")
    for s in scales:
        if isinstance(s, ChannelScale):
            h.update(b"c" + float(s.base).hex().encode() + b":")
            h.update(s.exponents.numpy().tobytes())
        else:
            h.update(b"f" + float(s).hex().encode())
        h.update(b";")
    return h.digest()


def _rms0(p: torch.Tensor) -> float:
    x = p.detach().to("cpu", torch.float64).reshape(-1)
    if x.numel() == 0:
        return 1.0
    rms = math.sqrt(float(torch.dot(x, x)) / x.numel())
    if not math.isfinite(rms) or rms <= 0.0:
        return 1.0
    return float(2.0 ** (round(4.0 * math.log2(rms)) / 4.0))


def tensor_scales(params: Sequence[torch.Tensor], rule: str) -> tuple[float, ...]:
    """s_t for every tensor of θ₀ (call it before any update is applied).

    For ``act0`` these are the bases (rms0); training/act_scales.py adds the factors.
    """
    if rule not in SCALE_RULES:
        raise ValueError(f"unknown scale rule {rule!r}; expected one of {SCALE_RULES}")
    if rule == "none":
        return tuple(1.0 for _ in params)
    return tuple(_rms0(p) for p in params)
