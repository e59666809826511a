"""The update rule (DESIGN §2): learning-rate schedules and applying updates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from seedfl.core.config import ZOConfig
from seedfl.core.perturbation import direction
from seedfl.core.rule import LearningRate, apply_coalesced_, apply_update_, coalesce

SHAPES = [(8, 16), (300,), (5, 7, 3), (1,)]


@dataclass(frozen=True)
class Sched:
    lr: float = 0.1
    schedule: str = "constant"
    warmup: int = 0
    horizon: int = 0


def params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) for s in SHAPES]


def test_constant_is_the_default_and_reads_the_zo_config() -> None:
    lr = LearningRate(ZOConfig(lr=3e-4))
    assert [lr.at(s) for s in (0, 1, 10**9)] == [3e-4] * 3


def test_warmup_ramps_linearly_to_lr() -> None:
    lr = LearningRate(Sched(lr=1.0, warmup=4))
    assert [lr.at(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_linear_decay_reaches_zero_at_the_horizon() -> None:
    lr = LearningRate(Sched(lr=1.0, schedule="linear", warmup=2, horizon=12))
    assert lr.at(0) == 0.5
    assert lr.at(2) == 1.0
    assert lr.at(7) == pytest.approx(0.5)
    assert lr.at(12) == 0.0
    assert lr.at(10**6) == 0.0
    values = [lr.at(s) for s in range(2, 13)]
    assert values == sorted(values, reverse=True)


def test_cosine_decay() -> None:
    lr = LearningRate(Sched(lr=2.0, schedule="cosine", horizon=100))
    assert lr.at(0) == 2.0
    assert lr.at(50) == pytest.approx(1.0)
    assert lr.at(25) == pytest.approx(1.0 + math.cos(math.pi / 4))
    assert lr.at(100) == pytest.approx(0.0, abs=1e-15)
    assert lr.at(500) == pytest.approx(0.0, abs=1e-15)


def test_schedule_is_a_pure_function_of_seq() -> None:
    a = LearningRate(Sched(schedule="cosine", warmup=5, horizon=50))
    b = LearningRate(Sched(schedule="cosine", warmup=5, horizon=50))
    seqs = [40, 3, 17, 3, 0, 49]
    assert [a.at(s) for s in seqs] == [b.at(s) for s in reversed(seqs)][::-1]


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        LearningRate(Sched(schedule="linear", warmup=10, horizon=10))
    with pytest.raises(ValueError, match="unknown schedule"):
        LearningRate(Sched(schedule="step"))
    with pytest.raises(ValueError, match=">= 0"):
        LearningRate(Sched(lr=-1.0))
    with pytest.raises(ValueError, match="seq"):
        LearningRate(Sched()).at(-1)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_apply_adds_coef_times_z_to_every_tensor(kind: str) -> None:
    ps = params()
    expected = [p + 0.01 * direction(77, t, p.numel(), kind).reshape(p.shape)
                for t, p in enumerate(ps)]
    apply_update_(ps, 77, 0.01, kind)
    for got, want in zip(ps, expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_apply_then_negated_apply_returns_close_to_start(kind: str) -> None:
    ps = params(1)
    start = [p.clone() for p in ps]
    apply_update_(ps, 5, 0.003, kind)
    assert not torch.equal(ps[0], start[0])
    apply_update_(ps, 5, -0.003, kind)
    for got, want in zip(ps, start, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_zero_coef_leaves_every_bit() -> None:
    ps = params(2)
    ps[0][0, 0] = -0.0
    start = [p.clone() for p in ps]
    apply_update_(ps, 9, 0.0)
    assert apply_coalesced_(ps, [(9, 0.5), (9, -0.5), (4, 0.0)]) == 0
    for got, want in zip(ps, start, strict=True):
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))


def test_coalesce_sums_equal_seeds_in_first_appearance_order() -> None:
    assert coalesce([(3, 0.5), (1, 1.0), (3, 0.25), (2, -1.0), (1, 1.0)]) == [
        (3, 0.75), (1, 2.0), (2, -1.0)]
    assert coalesce([]) == []
    # Correctly rounded sums: the order of arrival does not matter.
    terms = [(1, 1e16), (1, 1.0), (1, -1e16)]
    assert coalesce(terms) == coalesce(terms[::-1]) == [(1, 1.0)]


def test_coalesced_equals_sequential() -> None:
    terms = [(11, 0.01), (12, -0.02), (11, 0.005), (13, 0.03), (12, 0.001)]
    seq_params, co_params = params(3), params(3)
    for seed, coef in terms:
        apply_update_(seq_params, seed, coef)
    assert apply_coalesced_(co_params, terms) == 3
    for got, want in zip(co_params, seq_params, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
