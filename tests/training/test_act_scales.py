"""zo.scale = "act0": per-element powers of two from the activations at θ₀.

What must hold: exponents are integers in ±MAX_EXPONENT from a fixed probe
(same on every node), an update with them is exactly θ + (±a_t·2^e) rounded
once (so η = 0 is bit-identical and fused replay equals sequential replay bit
for bit), the estimator perturbs by exactly the same direction, and the
exponents are part of the fingerprint peers compare.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from test_learning import TASK, synthetic

from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.core.fused import add_terms_
from seedfl.core.perturbation import add_direction_, add_directions_, direction, scaled_alpha
from seedfl.core.scales import MAX_EXPONENT, ChannelScale, scales_digest, tensor_scales
from seedfl.training.act_scales import activation_scales, channel_exponents
from seedfl.training.engine import Engine
from seedfl.training.estimator import Estimator
from seedfl.training.model import ModelBundle, load_model
from seedfl.training.task import Task

ALL = ModelConfig(name="seedfl:tiny", trainable=("*",))


def _scales(bundle: ModelBundle) -> tuple:  # type: ignore[type-arg]
    task = Task.from_config(TASK, bundle.tokenizer)
    return activation_scales(bundle, task, tensor_scales(bundle.params, "rms0"))


def test_channel_exponents_round_the_log_ratio_to_the_rms_over_channels() -> None:
    rms = torch.tensor([1.0, 1.0, 4.0, 0.5, 0.0, math.nan])
    e = channel_exponents(rms)
    big_r = 1 / math.sqrt((1 + 1 + 1 / 16 + 4) / 4)  # over the usable channels only
    assert e.dtype == torch.int8
    assert e.tolist() == [round(math.log2(big_r)), round(math.log2(big_r)),
                          round(math.log2(big_r / 4)), round(math.log2(big_r / 0.5)), 0, 0]
    assert e.tolist() == [0, 0, -2, 1, 0, 0]
    # a channel 2^20 louder than the rest is clamped
    assert int(channel_exponents(torch.tensor([1.0] * 64 + [2.0**20]))[-1]) == -MAX_EXPONENT


def test_tiny_model_gets_integer_exponents_shared_by_each_input_channel() -> None:
    bundle = load_model(ALL)
    scales = _scales(bundle)
    assert scales == scales
    assert scales_digest(scales) == scales_digest(_scales(load_model(ALL)))  # deterministic
    bases = tensor_scales(bundle.params, "rms0")
    kinds = []
    for name, s, p, base in zip(bundle.names, scales, bundle.params, bases, strict=True):
        if not isinstance(s, ChannelScale):
            assert s == base
            continue
        kinds.append(name)
        assert s.base == base
        assert s.exponents.numel() == p.numel()
        assert int(s.exponents.abs().max()) <= MAX_EXPONENT
        if p.dim() == 2:  # one exponent per input channel, the same in every row
            rows = s.exponents.reshape(p.shape)
            assert torch.equal(rows, rows[:1].expand_as(rows))
    assert "model.norm.weight" in kinds
    assert "model.layers.0.mlp.down_proj.weight" in kinds
    assert any(bool(s.exponents.any()) for s in scales if isinstance(s, ChannelScale))


def _reference(p: torch.Tensor, seed: int, t: int, alpha: float, s: ChannelScale) -> torch.Tensor:
    z = direction(seed, t, p.numel()).double()
    a = float(np.float32(scaled_alpha(alpha, s.base)))  # the kernel adds ±float32(a)
    delta = a * torch.ldexp(torch.ones_like(z), s.exponents.to(torch.int64)) * z
    return (p.detach().reshape(-1).double() + delta).float().reshape(p.shape)


def test_update_is_theta_plus_exact_power_of_two_multiples_rounded_once() -> None:
    bundle = load_model(ALL)
    scales = _scales(bundle)
    before = [p.clone() for p in bundle.params]
    add_directions_(bundle.params, 1234, -0.37, "rademacher", scales)
    for t, (p, b, s) in enumerate(zip(bundle.params, before, scales, strict=True)):
        if isinstance(s, ChannelScale):
            assert torch.equal(p, _reference(b, 1234, t, -0.37, s)), bundle.names[t]
    # η = 0: bit-identical, -0.0 included
    p0 = bundle.params[1]
    p0[0] = -0.0
    snap = [p.clone() for p in bundle.params]
    add_directions_(bundle.params, 99, 0.0, "rademacher", scales)
    for p, q in zip(bundle.params, snap, strict=True):
        assert torch.equal(p.view(torch.int32), q.view(torch.int32))


def test_fused_replay_with_channel_scales_equals_sequential_bit_for_bit() -> None:
    bundle = load_model(ALL)
    scales = _scales(bundle)
    seq = [p.clone() for p in bundle.params]
    fused = [p.clone() for p in bundle.params]
    rng = np.random.default_rng(0)
    terms = [(int(rng.integers(1, 2**62)), float(rng.normal()) * 1e-2) for _ in range(24)]
    for seed, coef in terms:
        add_directions_(seq, seed, coef, "rademacher", scales)
    add_terms_(fused, terms, "rademacher", scales)
    for a, b in zip(seq, fused, strict=True):
        assert torch.equal(a, b)


def test_estimator_perturbs_along_the_scaled_direction() -> None:
    bundle = load_model(ALL)
    scales = _scales(bundle)
    task = Task.from_config(TASK, bundle.tokenizer)
    enc = task.encode(synthetic(8, seed=1))
    est = Estimator(bundle, task, eps=1e-2, scales=scales).estimate(enc, 77)
    twin = copy.deepcopy(bundle)
    for t, (master, s) in enumerate(zip(twin.params, scales, strict=True)):
        add_direction_(master, 77, t, 1e-2, "rademacher", scale=s)
    twin.sync_to_model()
    assert est.loss_plus == task.loss(twin.model, enc)


def _cfg(scale: str, lr: float = 2e-3) -> SwarmConfig:
    return SwarmConfig(model=ALL, task=TASK,
                       zo=dataclasses.replace(ZOConfig(), lr=lr, eps=1e-3, batch_size=16,
                                              scale=scale))


def test_engine_fingerprint_covers_act0_exponents() -> None:
    data = synthetic(64, seed=0)
    engines = []
    for scale in ("rms0", "act0", "act0"):
        bundle = load_model(ALL)
        engines.append(Engine(_cfg(scale), bundle, Task.from_config(TASK, bundle.tokenizer),
                              data, bytes(16)))
    rms0, a, b = engines
    assert rms0.fingerprint == rms0.bundle.fingerprint
    assert a.fingerprint == b.fingerprint != a.bundle.fingerprint
    assert len(a.fingerprint) == len(a.bundle.fingerprint)
    # Another exponent anywhere is another fingerprint: such a node is refused.
    t = next(i for i, s in enumerate(b.scales) if isinstance(s, ChannelScale))
    s = b.scales[t]
    assert isinstance(s, ChannelScale)
    bumped = s.exponents.clone()
    bumped[0] = bumped[0] + (1 if bumped[0] < MAX_EXPONENT else -1)
    other = list(b.scales)
    other[t] = ChannelScale(s.base, bumped)
    assert scales_digest(other) != scales_digest(b.scales)


def test_act0_trains_the_letters_task_faster_than_rms0() -> None:
    # Measured: from 0.70, 150 steps at lr 0.4: act0 0.095, rms0 0.35.
    final = {}
    start = 0.0
    for scale in ("rms0", "act0"):
        bundle = load_model(ALL)
        task = Task.from_config(TASK, bundle.tokenizer)
        engine = Engine(_cfg(scale, lr=0.4), bundle, task, synthetic(128, seed=0), bytes(16))
        enc = task.encode(synthetic(64, seed=5))
        start = task.loss(bundle.model, enc)
        for _ in range(150):
            engine.step()
        final[scale] = task.loss(bundle.model, enc)
    assert final["act0"] < 0.2 * start
    assert final["rms0"] > 0.4 * start
