"""Codecs (DESIGN §4): exact decoding, reproducible unbiased encoding, clips, invalid codes."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seedfl.core.codecs import (
    CodecConfig,
    CodecError,
    Lin8,
    Log8,
    Sign1,
    make_codec,
    rounding_uniform,
)

LOG8 = make_codec(CodecConfig())
LIN8 = make_codec(CodecConfig(name="lin8", clip=2.0))
SIGN1 = make_codec(CodecConfig(name="sign1", clip=0.5))
ALL = [LOG8, LIN8, SIGN1]
SEEDS = st.integers(min_value=0, max_value=2**64 - 1)


def mean_decoded(codec: object, g: float, n: int = 4000) -> float:
    enc = codec.encode  # type: ignore[attr-defined]
    dec = codec.decode  # type: ignore[attr-defined]
    # Consecutive seeds give independent coins (they go through blake2b).
    return math.fsum(dec(enc(g, s)[0]) for s in range(n)) / n


def test_make_codec_builds_each_kind_and_refuses_bad_configs() -> None:
    assert isinstance(LOG8, Log8) and LOG8.wire_bits == 8
    assert isinstance(LIN8, Lin8) and LIN8.wire_bits == 8
    assert isinstance(SIGN1, Sign1) and SIGN1.wire_bits == 1
    assert [c.name for c in ALL] == ["log8", "lin8", "sign1"]
    for bad in [CodecConfig(name="fp8"), CodecConfig(g_min=0.0),
                CodecConfig(levels_per_octave=0), CodecConfig(name="lin8", clip=-1.0),
                CodecConfig(name="sign1", clip=math.inf)]:
        with pytest.raises(CodecError):
            make_codec(bad)


def test_rounding_uniform_is_defined_by_blake2b_of_the_seed() -> None:
    seed = 0xDEADBEEFCAFEF00D
    digest = hashlib.blake2b(seed.to_bytes(8, "little"), digest_size=8,
                             person=b"seedfl/round/v1").digest()
    assert rounding_uniform(seed) == (int.from_bytes(digest, "little") >> 11) * 2.0**-53
    us = [rounding_uniform(s) for s in range(2000)]
    assert all(0.0 <= u < 1.0 for u in us)
    assert abs(sum(us) / len(us) - 0.5) < 0.03


def test_log8_levels() -> None:
    g_min, r = 2.0**-10, 8
    assert LOG8.decode(0) == 0.0
    assert LOG8.decode(1) == g_min
    assert LOG8.decode(255) == -g_min  # byte 0xff is q = -1
    assert LOG8.decode(9) == 2 * g_min  # one octave up
    assert LOG8.decode(127) == g_min * 2.0 ** (126 / r)
    assert LOG8.decode(129) == -LOG8.decode(127)  # q = -127
    assert not LOG8.valid(0x80)
    with pytest.raises(CodecError, match="128"):
        LOG8.decode(0x80)
    # Levels are monotone: every code decodes to a distinct value.
    values = [LOG8.decode(c) for c in range(256) if LOG8.valid(c)]
    assert len(set(values)) == 255


def test_log8_exact_level_encodes_to_itself() -> None:
    for m in (1, 2, 50, 127):
        level = LOG8.decode(m)
        for s in range(20):
            assert LOG8.encode(level, s) == (m, False)
            assert LOG8.encode(-level, s) == ((-m) & 0xFF, False)
    assert LOG8.encode(0.0, 3) == (0, False)


def test_lin8_and_sign1_values() -> None:
    assert LIN8.decode(127) == 127 * (2.0 / 127)
    assert LIN8.decode(0x81) == -127 * (2.0 / 127)
    assert LIN8.decode(0) == 0.0
    assert SIGN1.decode(1) == 0.5 and SIGN1.decode(0) == -0.5
    assert not SIGN1.valid(2) and not SIGN1.valid(255)
    with pytest.raises(CodecError):
        SIGN1.decode(2)


def test_linear_codecs_expose_exact_integers() -> None:
    assert not LOG8.is_linear()
    with pytest.raises(CodecError, match="not linear"):
        LOG8.integer(3)
    assert LIN8.is_linear() and SIGN1.is_linear()
    for code in range(256):
        if LIN8.valid(code):
            q = LIN8.integer(code)
            assert q == (code - 256 if code >= 128 else code)
            assert LIN8.decode(code) == LIN8.scale * q
    assert (SIGN1.integer(1), SIGN1.integer(0)) == (1, -1)
    assert SIGN1.decode(0) == SIGN1.scale * SIGN1.integer(0)
    with pytest.raises(CodecError):
        LIN8.integer(0x80)


@pytest.mark.parametrize("codec", ALL, ids=lambda c: c.name)
def test_decode_many_matches_decode_and_rejects_invalid(codec: Log8) -> None:
    valid = bytes(c for c in range(256) if codec.valid(c))
    values = codec.decode_many(valid)
    assert values.dtype == np.float64
    assert values.tolist() == [codec.decode(c) for c in valid]
    assert codec.decode_many(b"").shape == (0,)
    bad = next(c for c in range(256) if not codec.valid(c))
    with pytest.raises(CodecError, match="position 2"):
        codec.decode_many(valid[:2] + bytes([bad]) + valid[:3])


@pytest.mark.parametrize("codec", ALL, ids=lambda c: c.name)
@given(g=st.floats(-1e3, 1e3, allow_nan=False), seed=SEEDS)
def test_encoding_is_reproducible_and_valid(codec: Log8, g: float, seed: int) -> None:
    code, clipped = codec.encode(g, seed)
    assert codec.encode(g, seed) == (code, clipped)
    assert 0 <= code <= 255 and codec.valid(code)
    if codec is not SIGN1:  # int8 codecs keep the sign (or round to 0)
        value = codec.decode(code)
        assert value == 0.0 or math.copysign(1.0, value) == math.copysign(1.0, g)


@given(g=st.floats(2.0**-10, 50.0), seed=SEEDS)
def test_log8_rounds_to_a_neighbouring_level(g: float, seed: int) -> None:
    code, clipped = LOG8.encode(g, seed)
    assert not clipped
    lower = max(lv for lv in (LOG8.decode(k) for k in range(128)) if lv <= g)
    upper = min(lv for lv in (LOG8.decode(k) for k in range(128)) if lv >= g)
    assert LOG8.decode(code) in (lower, upper)


@settings(max_examples=25, deadline=None)
@given(g=st.floats(-50.0, 50.0).filter(lambda v: abs(v) > 1e-6))
def test_log8_is_unbiased_inside_its_range(g: float) -> None:
    # Relative rounding spread is at most 2^(1/8)-1 ≈ 9% (and ≤ 100% below g_min);
    # 4000 coins bring the mean within ~1%.
    tolerance = 0.01 * abs(g) if abs(g) >= 2.0**-10 else 0.05 * 2.0**-10
    assert abs(mean_decoded(LOG8, g) - g) <= tolerance


@settings(max_examples=25, deadline=None)
@given(g=st.floats(-2.0, 2.0).filter(lambda v: abs(v) > 0.2))
def test_lin8_is_unbiased_inside_its_range(g: float) -> None:
    # Spread is one step (c/127 ≈ 0.016): the mean of 4000 is within ~1e-4 (15 sigma).
    assert abs(mean_decoded(LIN8, g) - g) <= 0.01 * abs(g)


@settings(max_examples=25, deadline=None)
@given(g=st.floats(-0.5, 0.5).filter(lambda v: abs(v) > 0.1))
def test_sign1_is_unbiased_inside_its_range(g: float) -> None:
    # One bit: the spread is ±c, the mean of 20000 has sigma ≤ 0.0035; allow ~6 sigma.
    assert abs(mean_decoded(SIGN1, g, 20000) - g) <= 0.02


def test_below_g_min_rounds_to_zero_or_g_min_with_the_right_probability() -> None:
    g = 0.25 * 2.0**-10
    codes = [LOG8.encode(g, s)[0] for s in range(4000)]
    assert set(codes) == {0, 1}
    assert abs(codes.count(1) / 4000 - 0.25) < 0.03


@pytest.mark.parametrize(("codec", "big", "top_code"),
                         [(LOG8, 1e6, 127), (LIN8, 3.0, 127), (SIGN1, 0.75, 1)],
                         ids=["log8", "lin8", "sign1"])
def test_clipping_is_reported(codec: Log8, big: float, top_code: int) -> None:
    for s in range(10):
        assert codec.encode(big, s) == (top_code, True)
        assert codec.encode(-big, s)[1] is True
        assert codec.decode(codec.encode(-big, s)[0]) == -codec.decode(top_code)
    assert codec.encode(math.inf, 0) == (top_code, True)
    assert codec.encode(0.0, 0)[1] is False


@pytest.mark.parametrize("codec", ALL, ids=lambda c: c.name)
def test_nan_cannot_be_encoded(codec: Log8) -> None:
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(math.nan, 0)


@pytest.mark.parametrize("codec", ALL, ids=lambda c: c.name)
@given(code=st.integers(-1000, 1000))
def test_invalid_codes_are_rejected(codec: Log8, code: int) -> None:
    if codec.valid(code):
        assert 0 <= code <= 255
        assert math.isfinite(codec.decode(code))
    else:
        with pytest.raises(CodecError):
            codec.decode(code)
