"""Fused replay (core/fused.py): k updates in one pass over θ.

The reference is sequential replay, ``add_directions_`` once per term in term
order. The fused result must equal it bit for bit (same per-element operations
in the same order), and therefore lie within the documented recursive-summation
bound γ_k·(|θ| + Σ|d|) of the exact sum; two orders of the terms must end
within 2·γ_k·(|θ| + Σ|d|) of each other (``fused.order_bound``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch

from seedfl.core import fused, fused_kernel, perturbation
from seedfl.core.fused import add_terms_, order_bound
from seedfl.core.perturbation import add_directions_, direction, scaled_alpha
from seedfl.core.rule import apply_coalesced_

# Several shapes, most not a multiple of 64 or 8, one empty.
SHAPES = [(7, 13), (1000,), (3, 5, 67), (1,), (64,), (0,), (4097,), (33, 31)]
SCALES = [0.5, 1.0, 2.0**-3.25, 1.6817928305074292, 1.0, 3.0, 2.0**-0.75, 0.125]


def params(seed: int = 0, shapes: Sequence[tuple[int, ...]] = SHAPES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) * 0.05 for s in shapes]


def clone(ps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [p.clone() for p in ps]


def updates(k: int, seed: int = 1) -> list[tuple[int, float]]:
    """k distinct seeds with coefficients spread over three binades, both signs."""
    rng = random.Random(seed)
    return [(rng.getrandbits(64), rng.choice([-1, 1]) * 1e-3 * 2.0 ** rng.uniform(-3, 0))
            for _ in range(k)]


def sequential(ps: list[torch.Tensor], terms: Sequence[tuple[int, float]], kind: str,
               scales: Sequence[float] | None) -> list[torch.Tensor]:
    for seed, coef in terms:
        add_directions_(ps, seed, coef, kind, scales)
    return ps


def bits(p: torch.Tensor) -> torch.Tensor:
    return p.view(torch.int32) if p.dtype == torch.float32 else p.view(torch.int64)


def assert_same_bits(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        assert torch.equal(bits(g), bits(w)), f"tensor {t} differs"


def exact_deltas(ps: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]], kind: str,
                 scales: Sequence[float] | None) -> list[list[torch.Tensor]]:
    """d_j = float32(a_j)·z_j per tensor, in float64 (exact for rademacher)."""
    out = []
    for t, p in enumerate(ps):
        row = []
        for seed, coef in terms:
            a = coef if scales is None else scaled_alpha(coef, scales[t])
            z = direction(seed, t, p.numel(), kind).reshape(p.shape).double()
            row.append(float(np.float32(a)) * z)
        out.append(row)
    return out


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on the compiled rademacher kernel and on the numpy path."""
    if request.param == "compiled":
        assert fused_kernel.AVAILABLE
    monkeypatch.setattr(fused, "USE_COMPILED", request.param == "compiled")
    return str(request.param)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Chunks of 128 and tasks of 512 elements, two workers: many boundaries per tensor."""
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 128)
    monkeypatch.setattr(fused, "TASK_ELEMENTS", 512)
    # The pool's grouping (perturbation.run_grouped) reads its own module's knobs.
    monkeypatch.setattr(perturbation, "TASK_ELEMENTS", 512)
    monkeypatch.setattr(perturbation, "_workers", lambda: 2)
    yield


@pytest.mark.parametrize("with_scales", [False, True])
def test_64_updates_fused_equal_sequential_and_lie_within_the_bound(with_scales: bool) -> None:
    scales = SCALES if with_scales else None
    terms = updates(64)
    start = params()
    seq = sequential(clone(start), terms, "rademacher", scales)
    got = clone(start)
    add_terms_(got, terms, "rademacher", scales)
    assert_same_bits(got, seq)
    worst = 0.0
    for t, (g, p0, ds) in enumerate(zip(got, start, exact_deltas(start, terms, "rademacher",
                                                                  scales), strict=True)):
        if p0.numel() == 0:
            continue
        exact = p0.double() + sum(ds, torch.zeros_like(p0, dtype=torch.float64))
        err = (g.double() - exact).abs()
        bound = order_bound(p0, [float(d.abs().max()) for d in ds]) / 2  # γ_k(|θ| + Σ|d|)
        assert bool((err <= bound).all()), (t, float((err - bound).max()))
        worst = max(worst, float(err.max()))
    assert worst > 0.0  # float32 rounding did happen, so the bound was exercised
    assert not torch.equal(got[1], start[1])


def test_one_term_is_add_directions_bit_for_bit() -> None:
    for scales in (None, SCALES):
        want, got = params(2), params(2)
        add_directions_(want, 99, -3.7e-4, "rademacher", scales)
        add_terms_(got, [(99, -3.7e-4)], "rademacher", scales)
        assert_same_bits(got, want)
        # One live term among zeros is the same single add.
        again = params(2)
        add_terms_(again, [(5, 0.0), (99, -3.7e-4), (6, 0.0)], "rademacher", scales)
        assert_same_bits(again, want)


def test_zero_coefficients_leave_every_bit_including_negative_zero() -> None:
    ps = params(3)
    ps[1][::7] = -0.0
    ps[0][0, 0] = -0.0
    start = clone(ps)
    add_terms_(ps, [(s, 0.0) for s in range(64)], "rademacher", SCALES)
    assert apply_coalesced_(ps, [(1, 0.0), (2, 0.0), (3, 1e-3), (3, -1e-3)]) == 0
    assert_same_bits(ps, start)
    assert int(torch.signbit(ps[1][::7]).sum()) == ps[1][::7].numel()


def test_a_coefficient_that_scales_to_zero_skips_only_that_tensor() -> None:
    ps = params(4)
    ps[0][0, 0] = -0.0
    start = clone(ps)
    # 1e-30 · 2^-120 is 0 in float32; 1e-30 · 2^90 is about 1.2e-3.
    scales = [2.0**-120] + [2.0**90] * (len(ps) - 1)
    terms = [(8, 1e-30), (9, -3e-30)]
    add_terms_(ps, terms, "rademacher", scales)
    assert_same_bits(ps, sequential(clone(start), terms, "rademacher", scales))
    assert_same_bits(ps[:1], start[:1])
    assert not torch.equal(ps[2], start[2])


def test_term_order_changes_the_result_by_at_most_the_bound() -> None:
    terms = updates(64, seed=5)
    shuffled = list(terms)
    random.Random(11).shuffle(shuffled)
    start = params(5)
    a, b = clone(start), clone(start)
    add_terms_(a, terms, "rademacher", SCALES)
    add_terms_(b, shuffled, "rademacher", SCALES)
    assert_same_bits(b, sequential(clone(start), shuffled, "rademacher", SCALES))
    moved = 0
    for t, (x, y, p0) in enumerate(zip(a, b, start, strict=True)):
        deltas = [abs(float(np.float32(scaled_alpha(c, SCALES[t])))) for _, c in terms]
        diff = (x.double() - y.double()).abs()
        assert bool((diff <= order_bound(p0, deltas)).all()), t
        moved += int((diff > 0).sum())
    assert moved > 0  # the order did matter for some element (else the test shows nothing)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_chunk_and_task_boundaries_with_threads(small_chunks: None, kind: str) -> None:
    shapes = [(1000,), (513,), (4097,), (64, 9), (129,), (5,)]
    terms = updates(7, seed=9)
    scales = [0.5, 1.0, 2.0, 0.25, 1.0, 4.0]
    start = params(6, shapes)
    got = clone(start)
    add_terms_(got, terms, kind, scales)
    assert_same_bits(got, sequential(clone(start), terms, kind, scales))


def test_a_long_backlog_goes_in_blocks_with_the_same_bits(monkeypatch: pytest.MonkeyPatch,
                                                         small_chunks: None) -> None:
    monkeypatch.setattr(fused, "BLOCK_TERMS", 7)
    terms = updates(50, seed=12)  # 7 blocks of 7 and a block of one term
    start = params(10, [(1000,), (37,), (600,)])
    got = clone(start)
    add_terms_(got, terms, "rademacher", [1.0, 0.25, 2.0])
    assert_same_bits(got, sequential(clone(start), terms, "rademacher", [1.0, 0.25, 2.0]))


def test_fallback_tensors_get_the_per_term_result() -> None:
    start = params(7, [(100,), (300,), (4, 50), (77,)])
    start[1] = start[1].double()
    start[2] = start[2].t()  # a strided view: not contiguous
    terms = updates(5, seed=3)
    scales = [1.0, 0.5, 2.0, 1.0]
    got = clone(start)
    assert not got[2].is_contiguous()
    add_terms_(got, terms, "rademacher", scales)
    want = sequential(clone(start), terms, "rademacher", scales)
    assert_same_bits([p.contiguous() for p in got], [p.contiguous() for p in want])
    assert got[1].dtype == torch.float64
    assert not torch.equal(got[2], start[2])


def test_bad_input_is_refused_before_anything_changes() -> None:
    ps = params(8)
    start = clone(ps)
    with pytest.raises(TypeError, match="floating"):
        add_terms_([*ps, torch.zeros(3, dtype=torch.int64)], updates(3), "rademacher")
    with pytest.raises(ValueError, match="scales"):
        add_terms_(ps, updates(3), "rademacher", [1.0])
    with pytest.raises(ValueError, match="kind"):
        add_terms_(ps, updates(3), "uniform")
    assert_same_bits(ps, start)


def test_misaligned_tasks_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "TASK_ELEMENTS", 100)  # not on a Philox block
    with pytest.raises(ValueError, match="multiple of 256"):
        add_terms_(params(), updates(2), "rademacher")


def test_apply_coalesced_makes_one_fused_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[tuple[int, float]]] = []
    real = fused.add_terms_

    def spy(ps: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]], kind: str,
            scales: Sequence[float] | None) -> None:
        calls.append(list(terms))
        real(ps, terms, kind, scales)

    import seedfl.core.rule as rule

    monkeypatch.setattr(rule, "add_terms_", spy)
    ps = params(9)
    assert apply_coalesced_(ps, [(1, 0.5), (2, 0.25), (1, -0.5), (3, 0.125)]) == 2
    assert calls == [[(2, 0.25), (3, 0.125)]]
