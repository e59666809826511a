"""Perturbation stream v1 (DESIGN §3): test vectors, and the fast path against the reference.

The reference is the definition: ``tensor + alpha * rademacher(seed, t, n)`` in
float32 (rounded once into the output dtype). The fast path must equal it bit
for bit, whatever the size, chunking, threading, dtype or layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from seedfl.core import perturbation as pt
from seedfl.core.perturbation import (
    PackedDirection,
    add_direction_,
    add_directions_,
    direction,
    gaussian,
    philox_words,
    rademacher,
)

WORD_VECTORS = [
    (0, 0, 0x02F4BA6408E4D89B, 0x3DD62B0B9CA8C5B2),
    (1, 0, 0x4DB6A27B756282DF, 0xD944FA03BABE0E2F),
    (1, 1, 0x133D1B1836B49E25, 0xFBD9FF744933275E),
    (0xDEADBEEFCAFEF00D, 7, 0x3640F3B24A1D513D, 0xDCE467951AB2B7B9),
]
SEED = 0x1234_5678_9ABC_DEF0
ALPHA = 0.0137


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny chunks and tasks, so small tensors cross many chunk and task boundaries."""
    monkeypatch.setattr(pt, "CHUNK_ELEMENTS", 256)
    monkeypatch.setattr(pt, "TASK_ELEMENTS", 1024)
    monkeypatch.setattr(pt, "DEVICE_CHUNK_ELEMENTS", 512)
    yield


@pytest.fixture
def two_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pt, "_workers", lambda: 2)
    yield


def reference(x: torch.Tensor, seed: int, t: int, alpha: float, kind: str) -> torch.Tensor:
    z = direction(seed, t, x.numel(), kind).reshape(x.shape)
    return x.to(torch.float32) + alpha * z


@pytest.mark.parametrize(("seed", "t", "w0", "w1"), WORD_VECTORS)
def test_philox_word_vectors(seed: int, t: int, w0: int, w1: int) -> None:
    words = philox_words(seed, t, 2)
    assert words.dtype == np.uint64
    assert [int(w) for w in words] == [w0, w1]


def test_first_sixteen_rademacher_elements() -> None:
    signs = "".join("+" if v > 0 else "-" for v in rademacher(1, 0, 16).tolist())
    assert signs == "+++++-++-+-----+"


def test_rademacher_follows_the_bits_of_the_words() -> None:
    n = 200
    words = [int(w) for w in philox_words(SEED, 3, 4)]
    expected = [1.0 if (words[i // 64] >> (i % 64)) & 1 else -1.0 for i in range(n)]
    z = rademacher(SEED, 3, n)
    assert z.dtype == torch.float32
    assert z.tolist() == expected


def test_gaussian_matches_its_float64_definition() -> None:
    n = 9
    words = [int(w) for w in philox_words(SEED, 2, 10)]
    expected = []
    for j in range(5):
        a, b = words[2 * j], words[2 * j + 1]
        u1 = ((a >> 11) + 1) * 2.0**-53
        u2 = (b >> 11) * 2.0**-53
        r = math.sqrt(-2.0 * math.log(u1))
        expected += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    z = gaussian(SEED, 2, n)
    assert z.dtype == torch.float32
    got = z.tolist()
    assert got == pytest.approx([float(np.float32(v)) for v in expected[:n]], rel=1e-6)
    # Statistics of a longer stream: standard normal.
    big = gaussian(SEED, 2, 100_000)
    assert abs(float(big.mean())) < 0.02
    assert abs(float(big.std()) - 1.0) < 0.02


def test_direction_dispatches_and_refuses_unknown_kinds() -> None:
    assert torch.equal(direction(SEED, 0, 70), rademacher(SEED, 0, 70))
    assert torch.equal(direction(SEED, 0, 70, "gaussian"), gaussian(SEED, 0, 70))
    with pytest.raises(ValueError, match="unknown perturbation kind"):
        direction(SEED, 0, 70, "uniform")
    with pytest.raises(ValueError, match="unknown perturbation kind"):
        add_direction_(torch.zeros(3), SEED, 0, 1.0, kind="uniform")


def test_streams_differ_by_seed_and_tensor_index() -> None:
    base = rademacher(SEED, 0, 256)
    assert not torch.equal(base, rademacher(SEED, 1, 256))
    assert not torch.equal(base, rademacher(SEED + 1, 0, 256))
    # A prefix of a longer stream is the shorter stream.
    assert torch.equal(rademacher(SEED, 0, 1000)[:256], base)


SIZES = [1, 2, 7, 63, 64, 65, 255, 256, 257, 1000, 1023, 1024, 1025, 4096 + 3, 12_345]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
@pytest.mark.parametrize("n", SIZES)
def test_fast_path_equals_reference_across_chunk_boundaries(n: int, kind: str) -> None:
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    expected = reference(x, SEED, 5, ALPHA, kind)
    y = x.clone()
    assert add_direction_(y, SEED, 5, ALPHA, kind) is y
    assert torch.equal(y, expected)
    out = torch.empty_like(x)
    assert add_direction_(x, SEED, 5, ALPHA, kind, out=out) is out
    assert torch.equal(out, expected)


@pytest.mark.usefixtures("two_workers")
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_default_chunks_with_threads_equal_reference(kind: str) -> None:
    n = 2 * pt.TASK_ELEMENTS + 3 * pt.CHUNK_ELEMENTS + 77  # several tasks, a ragged tail
    x = torch.randn(n, generator=torch.Generator().manual_seed(1))
    expected = reference(x, SEED, 9, -ALPHA, kind)
    add_direction_(x, SEED, 9, -ALPHA, kind)
    assert torch.equal(x, expected)


@pytest.mark.usefixtures("small_chunks", "two_workers")
def test_add_directions_uses_position_as_tensor_index() -> None:
    shapes = [(3, 5), (700,), (1, 1), (33, 31), (2, 2, 2)]
    gen = torch.Generator().manual_seed(2)
    params = [torch.randn(s, generator=gen) for s in shapes]
    expected = [reference(p, SEED, t, ALPHA, "rademacher") for t, p in enumerate(params)]
    add_directions_(params, SEED, ALPHA)
    for got, want in zip(params, expected, strict=True):
        assert got.shape == want.shape
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_half_output_is_the_float32_sum_rounded_once(dtype: torch.dtype, kind: str) -> None:
    x = torch.randn(3000, generator=torch.Generator().manual_seed(3))
    z = direction(SEED, 4, x.numel(), kind)
    expected = (x + 1e-3 * z).to(dtype)
    out = torch.empty(3000, dtype=dtype)
    add_direction_(x, SEED, 4, 1e-3, kind, out=out)
    assert torch.equal(out, expected)
    # A half source is widened to float32 first, then rounded once.
    xh = x.to(dtype)
    want = (xh.float() + 1e-3 * z).to(dtype)
    add_direction_(xh, SEED, 4, 1e-3, kind)
    assert torch.equal(xh, want)


def test_float64_tensors_work_in_float64() -> None:
    x = torch.randn(500, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    alpha32 = float(np.float32(ALPHA))
    expected = x + alpha32 * rademacher(SEED, 0, 500).double()
    add_direction_(x, SEED, 0, ALPHA)
    assert torch.equal(x, expected)


@pytest.mark.usefixtures("small_chunks")
def test_torch_unpack_path_equals_numpy_path() -> None:
    # The path CUDA/MPS tensors take, run on the CPU: same bits, same sums.
    n = 3000
    x = torch.randn(n, generator=torch.Generator().manual_seed(5))
    for kind in ("rademacher", "gaussian"):
        words = philox_words(SEED, 6, -(-n // 64) if kind == "rademacher" else n)
        via_torch = torch.empty(n)
        pt._torch_chunk(kind, words, x, via_torch, np.float32(ALPHA), torch.float32)
        assert torch.equal(via_torch, reference(x, SEED, 6, ALPHA, kind))


@pytest.mark.usefixtures("small_chunks")
def test_non_contiguous_tensors_are_handled() -> None:
    base = torch.randn(40, 30, generator=torch.Generator().manual_seed(6))
    view = base.t()  # 30 x 40, not contiguous
    assert not view.is_contiguous()
    expected = reference(view, SEED, 1, ALPHA, "rademacher")  # row-major order of the view
    untouched = base.clone()
    out = torch.empty(40, 30).t()
    add_direction_(view, SEED, 1, ALPHA, out=out)
    assert torch.equal(out, expected)
    assert torch.equal(base, untouched)  # out= leaves the source alone
    add_direction_(view, SEED, 1, ALPHA)
    assert torch.equal(view, expected)
    assert torch.equal(base.t(), expected)  # in place wrote through the view


def test_zero_alpha_in_place_changes_no_bit() -> None:
    x = torch.tensor([-0.0, 0.0, 1.5, -2.25, float("inf")])
    before = x.clone()
    add_direction_(x, SEED, 0, 0.0)
    assert torch.equal(x.view(torch.int32), before.view(torch.int32))
    out = torch.empty(5, dtype=torch.float16)
    add_direction_(x, SEED, 0, 0.0, out=out)
    assert torch.equal(out, before.half())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        add_direction_(torch.zeros(4), SEED, 0, 1.0, out=torch.zeros(5))
    with pytest.raises(TypeError, match="floating"):
        add_direction_(torch.zeros(4, dtype=torch.int32), SEED, 0, 1.0)


def test_requires_grad_parameters_are_updated_without_autograd() -> None:
    p = torch.nn.Parameter(torch.randn(100))
    expected = reference(p.detach(), SEED, 0, ALPHA, "rademacher")
    add_direction_(p, SEED, 0, ALPHA)
    assert torch.equal(p.detach(), expected)
    assert p.grad_fn is None


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_packed_direction_equals_regenerating(kind: str) -> None:
    sizes = [7, 640, 1500]
    gen = torch.Generator().manual_seed(7)
    params = [torch.randn(n, generator=gen) for n in sizes]
    packed = PackedDirection.generate(SEED, sizes, kind)
    for t, p in enumerate(params):
        plus, minus = torch.empty_like(p), torch.empty_like(p)
        packed.add_(t, p, ALPHA, out=plus)
        packed.add_(t, p, -ALPHA, out=minus)
        assert torch.equal(plus, reference(p, SEED, t, ALPHA, kind))
        assert torch.equal(minus, reference(p, SEED, t, -ALPHA, kind))
    expected = [reference(p, SEED, t, 0.5, kind) for t, p in enumerate(params)]
    packed.add_all_(params, 0.5)
    for got, want in zip(params, expected, strict=True):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match="elements"):
        packed.add_(0, torch.zeros(8), 1.0)
    with pytest.raises(ValueError, match="tensors"):
        packed.add_all_(params[:2], 1.0)


def test_packed_rademacher_costs_one_bit_per_element() -> None:
    packed = PackedDirection.generate(SEED, [64 * 10, 128])
    assert packed.nbytes == (64 * 10 + 128) // 8
