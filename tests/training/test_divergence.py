"""Divergence detection: a too-large lr stops the node's own steps with a message
naming lr and eps; a good lr is never stopped."""

from __future__ import annotations

import dataclasses
import math

import pytest
from poolkit import TASK, engine
from test_learning import synthetic

from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.training.divergence import DivergenceWatch
from seedfl.training.engine import DivergedError


def test_watch_flags_a_sustained_rise_not_a_spike() -> None:
    w = DivergenceWatch(multiple=3.0, patience=5, warmup=3)
    assert [w.observe(x) for x in (1.0, 1.5, 1.2)] == [None] * 3
    assert w.baseline == 1.0
    # One huge spike lifts the EMA for a while but falls back: not divergence.
    assert w.observe(40.0) is None
    assert all(w.observe(1.0) is None for _ in range(200))
    reasons = [w.observe(10.0) for _ in range(60)]
    first = next(i for i, r in enumerate(reasons) if r is not None)
    assert "above 3 (3x its starting value 1)" in str(reasons[first])
    assert w.observe(math.nan) == "the loss is nan"


def test_watch_ignores_noise_of_a_loss_near_zero() -> None:
    # A fitted model restarted: 0.03 at the start, 0.09 later is noise, not divergence.
    w = DivergenceWatch(patience=5, warmup=3)
    assert all(w.observe(x) is None for x in (0.03, 0.05, 0.04, *[0.09] * 200))
    assert any(w.observe(5.0) is not None for _ in range(100))


def test_watch_rejects_nonsense_knobs() -> None:
    with pytest.raises(ValueError):
        DivergenceWatch(multiple=1.0)


def _cfg(lr: float) -> SwarmConfig:
    return SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK,
                       zo=dataclasses.replace(ZOConfig(), lr=lr, eps=1e-3, batch_size=16))


def test_too_large_lr_is_stopped_with_the_documented_message() -> None:
    eng = engine(_cfg(1.0), synthetic(128, seed=0))
    with pytest.raises(DivergedError) as info:
        for _ in range(400):
            eng.step()
    msg = str(info.value)
    assert "training diverged" in msg and "stopped its own steps" in msg
    assert "zo.lr (now 1.0)" in msg and "zo.eps (now 0.001)" in msg
    # The diverged step was not applied: the applied count is the steps that passed.
    assert eng.next_seq() == eng.stats.steps < 400


def test_a_good_lr_runs_without_a_stop() -> None:
    eng = engine(_cfg(2e-3), synthetic(128, seed=0))
    for _ in range(80):
        eng.step()
    assert eng.stats.steps == 80
