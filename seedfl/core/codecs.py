"""Codecs (DESIGN §4): the projected gradient g as one code byte, and back.

Every node decodes every code the same way; encoding rounds stochastically so
that E[decode(encode(g, S))] = g inside the codec's range, with the rounding
coin derived from the update's seed S, so encoding is reproducible:

    u(S) = (le_u64(blake2b(le_u64(S), digest_size=8, person=b"seedfl/round/v1")) >> 11) · 2⁻⁵³

u is uniform on [0, 1); a value x between neighbouring levels lo ≤ x < hi
rounds up when u < (x − lo) / (hi − lo).

Codes are unsigned bytes 0..255. For log8 and lin8 the byte is the two's
complement of an int8 q and q = −128 (byte 0x80) is invalid:

- log8: q = 0 is 0; |q| = m in 1..127 is g_min · 2^((m−1)/r) with the sign of q.
  Below g_min a value rounds to 0 or ±g_min; above the top level it clips.
  Levels are float64 from Python's ``**`` (bit-identical where libm's pow is
  correctly rounded, as in glibc and macOS).
- lin8: q · (c / 127), clipping at c. Linear: decode = scale · q.
- sign1: byte 1 is +c, byte 0 is −c, every other byte is invalid. Linear:
  decode = c · (±1). Eight to a byte happens only on the wire, not here.

This module knows nothing of models, updates or learning rates.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

CODEC_NAMES: tuple[str, ...] = ("log8", "lin8", "sign1")


class CodecError(ValueError):
    """A code that no codec of this swarm can decode, or an unusable codec config."""


@dataclass(frozen=True)
class CodecConfig:
    """The ``[codec]`` table of the swarm config."""

    name: str = "log8"
    g_min: float = 2.0**-10
    levels_per_octave: int = 8
    clip: float = 1.0


class Codec(Protocol):
    name: str
    wire_bits: int  # 8, or 1 for sign1
    scale: float  # decode(c) == scale * integer(c) for linear codecs; 0.0 otherwise

    def encode(self, g: float, seed: int) -> tuple[int, bool]: ...  # (code byte, clipped)
    def decode(self, code: int) -> float: ...
    def decode_many(self, codes: bytes) -> npt.NDArray[np.float64]: ...
    def valid(self, code: int) -> bool: ...
    def is_linear(self) -> bool: ...
    def integer(self, code: int) -> int: ...


def rounding_uniform(seed: int) -> float:
    """The rounding coin u(S) in [0, 1) of the update with seed S."""
    h = hashlib.blake2b(seed.to_bytes(8, "little"), digest_size=8, person=b"seedfl/round/v1")
    return (int.from_bytes(h.digest(), "little") >> 11) * 2.0**-53


def _int8_of(code: int) -> int:
    return code - 256 if code >= 128 else code


def _byte_of(q: int) -> int:
    return q & 0xFF


def _check_g(g: float) -> None:
    if math.isnan(g):
        raise ValueError("cannot encode g = NaN: the loss is not finite")


class _TableCodec:
    """Shared parts: a 256-entry decode table (NaN marks invalid codes)."""

    name = ""
    wire_bits = 8
    scale = 0.0

    def _build_table(self) -> None:
        table = np.full(256, np.nan, dtype=np.float64)
        for code in range(256):
            if self.valid(code):
                table[code] = self.decode(code)
        self._table = table

    def valid(self, code: int) -> bool:
        return 0 <= code <= 255 and code != 0x80

    def _checked(self, code: int) -> int:
        if not self.valid(code):
            raise CodecError(f"code {code} is not a valid {self.name} code")
        return code

    def decode(self, code: int) -> float:
        raise NotImplementedError

    def decode_many(self, codes: bytes) -> npt.NDArray[np.float64]:
        values = self._table[np.frombuffer(codes, dtype=np.uint8)]
        bad = np.flatnonzero(np.isnan(values))
        if bad.size:
            i = int(bad[0])
            raise CodecError(f"code {codes[i]} at position {i} is not a valid {self.name} code")
        return values

    def is_linear(self) -> bool:
        return self.scale != 0.0

    def integer(self, code: int) -> int:
        if not self.is_linear():
            raise CodecError(f"{self.name} is not linear: it has no integer form")
        return _int8_of(self._checked(code))


class Log8(_TableCodec):
    name = "log8"

    def __init__(self, g_min: float, levels_per_octave: int) -> None:
        self.g_min = g_min
        self.r = levels_per_octave
        # levels[m] is the magnitude of |q| = m; levels[0] = 0.
        self.levels = [0.0] + [g_min * 2.0 ** ((m - 1) / self.r) for m in range(1, 128)]
        self.top = self.levels[127]
        self._levels = np.array(self.levels, dtype=np.float64)
        self._build_table()

    def decode(self, code: int) -> float:
        q = _int8_of(self._checked(code))
        return math.copysign(self.levels[abs(q)], q) if q else 0.0

    def encode(self, g: float, seed: int) -> tuple[int, bool]:
        _check_g(g)
        a = abs(g)
        if a >= self.top:
            m, clipped = 127, a > self.top
        else:
            lo = int(np.searchsorted(self._levels, a, side="right")) - 1
            low, high = self.levels[lo], self.levels[lo + 1]
            m, clipped = lo + (rounding_uniform(seed) < (a - low) / (high - low)), False
        return _byte_of(-m if g < 0 else m), clipped


class Lin8(_TableCodec):
    name = "lin8"

    def __init__(self, clip: float) -> None:
        self.clip = clip
        self.scale = clip / 127
        self._build_table()

    def decode(self, code: int) -> float:
        return _int8_of(self._checked(code)) * self.scale

    def encode(self, g: float, seed: int) -> tuple[int, bool]:
        _check_g(g)
        clipped = abs(g) > self.clip
        x = max(-127.0, min(127.0, g / self.scale))
        lo = math.floor(x)
        q = min(127, lo + (rounding_uniform(seed) < x - lo))
        return _byte_of(q), clipped


class Sign1(_TableCodec):
    name = "sign1"
    wire_bits = 1

    def __init__(self, clip: float) -> None:
        self.clip = clip
        self.scale = clip
        self._build_table()

    def valid(self, code: int) -> bool:
        return code in (0, 1)

    def decode(self, code: int) -> float:
        return self.clip if self._checked(code) else -self.clip

    def integer(self, code: int) -> int:
        return 1 if self._checked(code) else -1

    def encode(self, g: float, seed: int) -> tuple[int, bool]:
        _check_g(g)
        x = max(-1.0, min(1.0, g / self.clip))
        # P(+c) = (1 + x) / 2 makes E = c · x = g inside [-c, c].
        return int(rounding_uniform(seed) < (1.0 + x) / 2.0), abs(g) > self.clip


def make_codec(cfg: CodecConfig) -> Codec:
    """The codec a swarm config names; raises CodecError for an unusable config."""
    if cfg.name not in CODEC_NAMES:
        raise CodecError(f"unknown codec {cfg.name!r}; expected one of {CODEC_NAMES}")
    if cfg.name == "log8":
        if not (cfg.g_min > 0 and math.isfinite(cfg.g_min)) or cfg.levels_per_octave < 1:
            raise CodecError("log8 needs g_min > 0 and levels_per_octave >= 1")
        return Log8(cfg.g_min, cfg.levels_per_octave)
    if not (cfg.clip > 0 and math.isfinite(cfg.clip)):
        raise CodecError(f"{cfg.name} needs clip > 0")
    return Lin8(cfg.clip) if cfg.name == "lin8" else Sign1(cfg.clip)
