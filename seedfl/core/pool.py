"""FedKSeed pool state (DESIGN §5): exact per-slot accumulators, importance sampling, rebuild.

In pool mode θ = θ₀ − Σ_k A[k]·z(pool[k]) with A[k] = Σ η(seq)·decode(code) over
the updates applied on slot k. ``PoolAccumulators`` keeps A exactly, as integers:

    A[k] = unit · sums[k]        (+ base[k] on a node that joined from a snapshot)

where each update adds the integer ``term(seq, code)``. Integer addition is
associative, so equal applied sets give bit-identical state in any arrival order.

- Linear codecs (lin8, sign1) with constant η: term = integer(code), unit = η·scale.
  Exact: A[k] is η·scale times the true integer sum.
- log8 with constant η: term = round(|decode(code)| / g₀ · 2^24) with its sign,
  g₀ the smallest non-zero level; unit = η·g₀·2⁻²⁴. Each term is off by at
  most 2⁻²⁵·g₀, finer than float32 resolves at any level, for 8 bytes per slot
  (per-code counts would be exact but cost 255 counters per slot).
- Any schedule other than constant η: term = round(η(seq)/lr · term₀ · 2^16),
  unit = lr·g₀·2⁻⁴⁰ (g₀ = scale for linear codecs): fixed point with absolute
  resolution 2⁻¹⁶ of one full-η smallest term, so terms of tiny η lose
  relative precision and η = 0 terms vanish; still order independent.

Sums are Python ints (no overflow). Two serialised forms, both framed by a
52-byte header/trailer (magic, version, K, unit, update count, digest, checksum):

- snapshot (``to_bytes``): float32 A[k], K·4 bytes; what a joiner needs to
  rebuild θ (``rebuild_``). A node loaded from it keeps A as ``base`` and sums
  what it applies after; its digest then differs from its peers'.
- exact (``to_exact_bytes``): zig-zag varints of sums, per-slot counts and
  per-slot Σ|term₀| (the importance history), plus base when present; for
  checkpoints and for joiners that must keep a digest equal to the swarm's.

Importance sampling (FedKSeed-Pro): the history of slot k is every update
applied on it; its mean |g| is Σ|term₀|/count (codec units, so every node with
the same applied set agrees exactly). Unseen slots take the mean of the seen
slots' means; the means are min-max normalised to [0, 1] and p = softmax. With
no history, or all means equal, p is uniform. The draw of update (origin, seq)
inverts the CDF at a uniform derived from blake2b(swarm_key ‖ origin ‖ seq).

This module knows nothing of models beyond a list of tensors, of origins'
version vectors, or of the network.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from seedfl.core.codecs import Codec
from seedfl.core.rule import LearningRate, apply_coalesced_
from seedfl.core.scales import Scale
from seedfl.core.seeds import NODE_ID_BYTES, SWARM_KEY_BYTES

FRACTION_BITS = 24  # fixed-point bits of a non-linear codec's term
SCHEDULE_BITS = 16  # extra bits when η varies with seq
MAGIC = b"SFPA"
VERSION = 1
_SNAPSHOT, _EXACT = 0, 1
_HEADER = struct.Struct("<4sBBHIdQ16s")  # magic, version, form, flags, K, unit, updates, digest
_CHECK_BYTES = 8
FRAMING_BYTES = _HEADER.size + _CHECK_BYTES
_HAS_BASE = 1

F64 = npt.NDArray[np.float64]


class PoolStateError(ValueError):
    """Serialised accumulators that are corrupt or belong to another pool."""


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _varints(values: Sequence[int], signed: bool) -> bytes:
    out = bytearray()
    for v in values:
        u = _zigzag(v) if signed else v
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


def _read_varints(data: bytes, pos: int, n: int, signed: bool) -> tuple[list[int], int]:
    values: list[int] = []
    for _ in range(n):
        u, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 1024:
                raise PoolStateError("truncated or malformed varint in pool state")
            b = data[pos]
            pos += 1
            u |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        values.append((u >> 1) ^ -(u & 1) if signed else u)
    return values, pos


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_CHECK_BYTES, person=b"seedfl/pchk/v1").digest()


class PoolAccumulators:
    """A[k] for k in 0..K−1, kept as exact integers; single-threaded (the engine's)."""

    def __init__(self, size: int, codec: Codec, lr: LearningRate) -> None:
        if not 1 <= size <= 1 << 16:
            raise ValueError(f"pool size must be in 1..65536, got {size}")
        self.size = size
        valid = [c for c in range(256) if codec.valid(c)]
        if codec.is_linear():
            g0, bits = codec.scale, 0
            table = {c: codec.integer(c) for c in valid}
        else:
            g0 = min(abs(codec.decode(c)) for c in valid if codec.decode(c) != 0.0)
            bits = FRACTION_BITS
            table = {c: round(codec.decode(c) / g0 * 2.0**bits) for c in valid}
        self._table = table  # term₀: the codec-only integer of each valid code
        self._lr = lr
        self._constant = lr.schedule == "constant" and lr.warmup == 0
        if self._constant:
            self.unit = lr.lr * g0 * 2.0**-bits
        else:
            self.unit = lr.lr * g0 * 2.0 ** -(bits + SCHEDULE_BITS)
        self.sums = [0] * size
        self.counts = [0] * size
        self.abs_sums = [0] * size
        self.base: F64 | None = None
        self.updates = 0
        self.nonzero = 0  # updates whose term was not 0 (what coalescing saves on)
        self._probabilities: F64 | None = None

    # -- accumulating --------------------------------------------------------
    def term(self, seq: int, code: int) -> int:
        """The integer this update adds to its slot's sum (A gains unit · term)."""
        t0 = self._table.get(code)
        if t0 is None:
            raise ValueError(f"code {code} is not valid for this pool's codec")
        if self._constant:
            return t0
        ratio = self._lr.at(seq) / self._lr.lr if self._lr.lr > 0 else 0.0
        return round(ratio * t0 * 2.0**SCHEDULE_BITS)

    def add_batch(self, first_seq: int, codes: bytes, slots: Sequence[int]) -> dict[int, int]:
        """Add consecutive updates; return each touched slot's integer delta.

        Validates every code and slot before changing anything.
        """
        if len(slots) != len(codes):
            raise ValueError(f"{len(codes)} codes but {len(slots)} slots")
        terms = [self.term(first_seq + i, c) for i, c in enumerate(codes)]
        for k in slots:
            if not 0 <= k < self.size:
                raise ValueError(f"slot {k} is outside the pool of {self.size}")
        deltas: dict[int, int] = {}
        for k, c, t in zip(slots, codes, terms, strict=True):
            self.sums[k] += t
            self.counts[k] += 1
            self.abs_sums[k] += abs(self._table[c])
            deltas[k] = deltas.get(k, 0) + t
            self.nonzero += t != 0
        self.updates += len(codes)
        self._probabilities = None
        return deltas

    def value_of(self, delta: int) -> float:
        """A's change for an integer delta of a slot's sum."""
        return self.unit * delta

    def values(self) -> F64:
        """A[k] as float64 (from the exact sums; plus base after a snapshot join)."""
        a = np.array([self.unit * s for s in self.sums], dtype=np.float64)
        return a if self.base is None else self.base + a

    # -- importance sampling -------------------------------------------------
    def probabilities(self) -> F64:
        """FedKSeed-Pro slot probabilities from the applied history (see module doc)."""
        if self._probabilities is None:
            self._probabilities = importance_probabilities(self.abs_sums, self.counts)
        return self._probabilities

    # -- serialising ---------------------------------------------------------
    def _header(self, form: int, flags: int, digest: bytes) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, form, flags, self.size, self.unit, self.updates,
                            digest)

    def _exact_payload(self) -> tuple[int, bytes]:
        flags = _HAS_BASE if self.base is not None else 0
        body = (_varints(self.sums, True) + _varints(self.counts, False)
                + _varints(self.abs_sums, False))
        if self.base is not None:
            body += self.base.astype("<f4").tobytes()
        return flags, body

    def digest(self) -> bytes:
        """16-byte blake2b of the exact state: equal applied sets give equal digests."""
        flags, body = self._exact_payload()
        head = struct.pack("<IdB", self.size, self.unit, flags)
        return hashlib.blake2b(head + body, digest_size=16, person=b"seedfl/pacc/v1").digest()

    def to_bytes(self) -> bytes:
        """Snapshot form: framing + K float32 A[k] (what a joiner rebuilds θ from)."""
        body = self._header(_SNAPSHOT, 0, self.digest()) + self.values().astype("<f4").tobytes()
        return body + _checksum(body)

    def to_exact_bytes(self) -> bytes:
        """Exact form: framing + varint sums, counts, |g| history (+ base)."""
        flags, payload = self._exact_payload()
        body = self._header(_EXACT, flags, self.digest()) + payload
        return body + _checksum(body)

    def load_bytes(self, data: bytes) -> None:
        """Replace this state with serialised accumulators of the same pool (either form).

        Raises PoolStateError when the bytes are corrupt, or K or the unit differ.
        """
        if len(data) < FRAMING_BYTES:
            raise PoolStateError("pool state is shorter than its framing")
        body, check = data[:-_CHECK_BYTES], data[-_CHECK_BYTES:]
        if _checksum(body) != check:
            raise PoolStateError("pool state checksum mismatch")
        magic, version, form, flags, size, unit, updates, digest = _HEADER.unpack_from(body)
        if magic != MAGIC or version != VERSION or form not in (_SNAPSHOT, _EXACT):
            raise PoolStateError("not a seedfl pool state of a known version")
        if size != self.size or unit != self.unit:
            raise PoolStateError(
                f"pool state is for K={size}, unit={unit!r}; this pool has K={self.size}, "
                f"unit={self.unit!r} (a different swarm config)")
        pos = _HEADER.size
        if form == _SNAPSHOT:
            if len(body) != pos + 4 * size:
                raise PoolStateError("snapshot payload is not K float32 values")
            base = np.frombuffer(body, dtype="<f4", count=size, offset=pos).astype(np.float64)
            if not np.all(np.isfinite(base)):
                raise PoolStateError("snapshot holds a non-finite accumulator")
            sums, counts, abs_sums = [0] * size, [0] * size, [0] * size
        else:
            sums, pos = _read_varints(body, pos, size, True)
            counts, pos = _read_varints(body, pos, size, False)
            abs_sums, pos = _read_varints(body, pos, size, False)
            base = None
            if flags & _HAS_BASE:
                base = np.frombuffer(body, dtype="<f4", count=size,
                                     offset=pos).astype(np.float64)
                pos += 4 * size
            if pos != len(body) or sum(counts) != updates:
                raise PoolStateError("exact pool state has trailing bytes or bad counts")
        self.sums, self.counts, self.abs_sums, self.base = sums, counts, abs_sums, base
        self.updates = updates if form == _EXACT else 0
        self._probabilities = None
        if form == _EXACT and self.digest() != digest:
            raise PoolStateError("exact pool state does not match its digest")


def snapshot_values(data: bytes) -> F64:
    """The float32 A[k] of a snapshot, unchecked against any config (for tools)."""
    size = _HEADER.unpack_from(data)[4]
    return np.frombuffer(data, dtype="<f4", count=size, offset=_HEADER.size).astype(np.float64)


def importance_probabilities(abs_sums: Sequence[int], counts: Sequence[int]) -> F64:
    """p ∝ exp(min-max-normalised mean |g|); unseen slots take the seen slots' mean."""
    size = len(counts)
    n = np.array(counts, dtype=np.float64)
    seen = n > 0
    if not seen.any():
        return np.full(size, 1.0 / size)
    # Correctly rounded quotients (float64 holds the ints exactly below 2^53, and
    # Python's int / int is correctly rounded above): equal histories, equal p.
    if max(abs_sums) < 1 << 53:
        means = np.divide(np.array(abs_sums, dtype=np.float64), n, out=np.zeros(size),
                          where=seen)
    else:
        means = np.array([s / c if c else 0.0 for s, c in zip(abs_sums, counts, strict=True)])
    m = np.where(seen, means, float(np.mean(means[seen])))
    lo, hi = float(m.min()), float(m.max())
    if hi <= lo:
        return np.full(size, 1.0 / size)
    w = np.exp((m - lo) / (hi - lo) - 1.0)
    p: F64 = w / w.sum()
    return p


def slot_uniform(swarm_key: bytes, origin: bytes, seq: int) -> float:
    """The uniform in [0, 1) that picks the importance-sampled slot of (origin, seq)."""
    if len(swarm_key) != SWARM_KEY_BYTES or len(origin) != NODE_ID_BYTES:
        raise ValueError("swarm key and origin must be 16 bytes each")
    h = hashlib.blake2b(swarm_key + origin + seq.to_bytes(8, "little"), digest_size=8,
                        person=b"seedfl/slot/v1")
    return (int.from_bytes(h.digest(), "little") >> 11) * 2.0**-53


def draw_slot(swarm_key: bytes, origin: bytes, seq: int, probabilities: F64) -> int:
    """Slot k of update (origin, seq) under ``probabilities`` (inverse CDF)."""
    cdf = np.cumsum(probabilities)
    u = slot_uniform(swarm_key, origin, seq) * float(cdf[-1])
    return min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)


def rebuild_(params: Sequence[torch.Tensor], values: Sequence[float] | F64,
             seeds: Sequence[int], kind: str = "rademacher",
             scales: Sequence[Scale] | None = None) -> int:
    """θ ← θ − Σ_k A[k]·z(pool[k]) in place; returns the number of regenerations (≤ K)."""
    if len(values) != len(seeds):
        raise ValueError(f"{len(values)} accumulators for a pool of {len(seeds)} seeds")
    terms = [(seeds[k], -float(a)) for k, a in enumerate(values) if a != 0.0]
    return apply_coalesced_(params, terms, kind, scales)
