"""Engine.apply_many drains a backlog in one fused pass (core/fused.py): the weights
are bit-identical to applying the same updates one at a time, in the same order,
on the compiled kernel (core/fused_kernel.py) and on the numpy path alike; with
η = 0 no bit moves."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from poolkit import TASK, engine, flat, peer_batches

import seedfl.core.rule as rule
from seedfl.core import fused as fused_mod
from seedfl.core import fused_kernel
from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.core.updates import UpdateBatch


@pytest.fixture(params=["compiled", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "compiled":
        assert fused_kernel.AVAILABLE  # numba is a dependency: the default path must be there
    monkeypatch.setattr(fused_mod, "USE_COMPILED", request.param == "compiled")
    return str(request.param)


@pytest.mark.parametrize(("scale", "kind"), [("none", "rademacher"), ("rms0", "rademacher"),
                                             ("rms0", "gaussian")])
def test_backlog_in_one_call_equals_one_by_one(scale: str, kind: str, path: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK,
                      zo=ZOConfig(lr=2e-3, scale=scale, perturbation=kind))
    batches = peer_batches(cfg, 16)
    n = sum(len(b) for b in batches)
    assert n >= 64
    fused, single = engine(cfg), engine(cfg)
    start = flat(single)
    assert torch.equal(flat(fused), start)

    calls: list[int] = []
    real = rule.add_terms_

    def spy(ps: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]], kind: str,
            scales: Sequence[float] | None) -> None:
        calls.append(len(terms))
        real(ps, terms, kind, scales)

    monkeypatch.setattr(rule, "add_terms_", spy)
    fused.apply_many(batches)
    assert len(calls) == 1 and calls[0] > 16  # the whole backlog in one pass
    for batch in batches:
        for u in batch.updates():
            single.apply(UpdateBatch(u.origin, u.seq, bytes([u.code])))

    assert fused.stats.applied == single.stats.applied == n
    assert fused.stats.regenerations == single.stats.regenerations == calls[0]
    assert not torch.equal(flat(fused), start)
    assert torch.equal(flat(fused), flat(single))


def test_eta_zero_backlog_leaves_every_bit(path: str) -> None:
    cfg = SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK,
                      zo=ZOConfig(lr=0.0, scale="rms0"))
    e = engine(cfg)
    before = [p.detach().clone() for p in e.bundle.params]
    batches = peer_batches(cfg, 16)
    e.apply_many(batches)
    assert e.stats.applied == sum(len(b) for b in batches) >= 64
    for p, q in zip(e.bundle.params, before, strict=True):
        assert torch.equal(p.detach().view(torch.int32), q.view(torch.int32))
