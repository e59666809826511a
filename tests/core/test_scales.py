"""Per-tensor scales of z (zo.scale): the rule's values and its exactness properties."""

from __future__ import annotations

import math

import pytest
import torch

from seedfl.core.perturbation import add_directions_, direction, scaled_alpha
from seedfl.core.rule import apply_coalesced_
from seedfl.core.scales import tensor_scales


def _tensors() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return [torch.randn(300, generator=g) * 1.8, torch.randn(7, 33, generator=g) * 0.08,
            torch.zeros(10)]


def test_rms0_is_the_quarter_octave_of_the_rms_at_theta0() -> None:
    ts = _tensors()
    scales = tensor_scales(ts, "rms0")
    for t, s in zip(ts[:2], scales[:2], strict=True):
        rms = math.sqrt(float((t.double() ** 2).mean()))
        assert s == 2.0 ** (round(4 * math.log2(rms)) / 4)
        assert abs(math.log2(s) - math.log2(rms)) <= 0.125 + 1e-12
    assert scales[2] == 1.0  # an all-zero tensor keeps z unscaled
    assert tensor_scales(ts, "none") == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="scale rule"):
        tensor_scales(ts, "rms")


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_scaled_update_is_alpha_times_scale_per_tensor(kind: str) -> None:
    ts = _tensors()
    scales = tensor_scales(ts, "rms0")
    got = [t.clone() for t in ts]
    add_directions_(got, 11, -0.37, kind, scales)
    for t, (src, out, s) in enumerate(zip(ts, got, scales, strict=True)):
        a = scaled_alpha(-0.37, s)
        assert float(torch.tensor(a, dtype=torch.float32)) == float(
            torch.tensor(-0.37 * s, dtype=torch.float32))
        z = direction(11, t, src.numel(), kind).reshape(src.shape)
        assert torch.equal(out, src + torch.tensor(a, dtype=torch.float32) * z)


def test_unit_scales_are_bit_identical_to_no_scales_and_zero_changes_nothing() -> None:
    ts = _tensors()
    a, b = [t.clone() for t in ts], [t.clone() for t in ts]
    add_directions_(a, 3, 0.25)
    add_directions_(b, 3, 0.25, scales=(1.0, 1.0, 1.0))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = [t.clone() for t in ts]
    add_directions_(c, 3, 0.0, scales=tensor_scales(ts, "rms0"))
    assert all(torch.equal(x, y) for x, y in zip(c, ts, strict=True))


def test_scaled_updates_commute() -> None:
    ts = _tensors()
    scales = tensor_scales(ts, "rms0")
    terms = [(101, -0.5), (202, 0.25), (101, 0.125), (303, -1.0)]
    a, b = [t.clone() for t in ts], [t.clone() for t in ts]
    apply_coalesced_(a, terms, "rademacher", scales)
    apply_coalesced_(b, list(reversed(terms)), "rademacher", scales)
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, rtol=0, atol=1e-6)
