"""Perturbation stream v1 (DESIGN §3): the direction z(S), bit-identical everywhere.

For trainable tensor t (canonical order) with n elements, the raw words are
``numpy.random.Philox(key=[S, t]).random_raw(...)``. Rademacher element i is
+1 when bit (i mod 64) of word i // 64 is set, else -1 (ceil(n/64) words).
Gaussian takes words in pairs, one pair per two elements, through Box-Muller in
float64, cast to float32 (portable to the last ulp only where libm's log, cos
and sin agree).

Public API (stable; other packages use only these names):

- ``philox_words(seed, t, nwords)``: the raw words.
- ``rademacher(seed, t, n)`` / ``gaussian(seed, t, n)`` / ``direction(seed, t, n, kind)``:
  z of one tensor as a float32 CPU tensor (reference and small uses).
- ``add_direction_(tensor, seed, t, alpha, kind, out=None)``: the fast path,
  ``tensor + alpha * z`` in place or into ``out``; ``add_directions_(tensors,
  seed, alpha, kind)`` does it for a model's canonical list (t = position).
- ``scaled_alpha(alpha, s)``: the coefficient of a tensor whose z is scaled by s
  (``zo.scale``, see core/scales.py): float32(alpha·s); the batch calls above take
  ``scales`` and use it per tensor.
- ``PackedDirection.generate(seed, sizes, kind)``: the words of one direction
  kept in memory (d/8 bytes for rademacher) for callers that need z several
  times, e.g. +εz, −εz and the update of one estimator step.

Exactness: the result is ``float32(src) + float32(alpha) * z`` computed in
float32 (float64 when a float64 tensor is involved) and rounded once to the
output dtype. For rademacher ``alpha * z`` is exactly ±alpha, so the result
does not depend on chunking, threads or device. ``alpha == 0`` in place is a
no-op (so ``-0.0`` weights keep their sign bit).

How it is fast (CPU, float32): z is never materialised for a tensor. Work is
split into tasks of ``TASK_ELEMENTS`` run on a small thread pool (numpy and
Philox release the GIL); each task positions its own Philox counter, then per
cache-sized chunk looks up 8 signed alphas per random byte in a 256-entry
table and adds. Other devices get the words from the CPU and unpack them there.

The module knows nothing of models, seeds of updates, or learning rates.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from seedfl.core.scales import ChannelScale, Scale

Kind = Literal["rademacher", "gaussian"]
T = TypeVar("T")
KINDS: tuple[str, ...] = ("rademacher", "gaussian")

Words = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]

# 256 Ki float32 (1 MiB) plus its deltas stay in the last-level cache; smaller
# chunks lose more to per-call overhead than they gain in L2 (measured: 64 Ki
# runs at ~85% of this). A multiple of 256 elements, so every chunk starts on
# a Philox block (4 words) for either kind.
CHUNK_ELEMENTS = 1 << 18
# One thread-pool task: large enough to amortise dispatch and generator setup.
TASK_ELEMENTS = 1 << 21
# Chunk of the torch (non-CPU or non-float32) path: bounds device temporaries.
DEVICE_CHUNK_ELEMENTS = 1 << 22
_WORD_BITS = 64
_WORDS_PER_BLOCK = 4


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; expected one of {KINDS}")


_local = threading.local()


def _generator(seed: int, tensor_index: int, first_word: int = 0) -> np.random.Philox:
    """This thread's Philox, keyed (S, t) and positioned at word ``first_word``.

    Setting the state of a kept generator costs ~2 µs, constructing one ~17 µs;
    per-call overhead matters for the many small tensors of a model.
    """
    gen: np.random.Philox | None = getattr(_local, "philox", None)
    if gen is None:
        gen = _local.philox = np.random.Philox(key=np.zeros(2, dtype=np.uint64))
    return _position(gen, seed, tensor_index, first_word)


def _position(gen: np.random.Philox, seed: int, tensor_index: int,
              first_word: int) -> np.random.Philox:
    """Key ``gen`` to (S, t) and put it at word ``first_word``, which must start a
    Philox block (a multiple of 4 words); later ``random_raw`` calls continue the stream."""
    gen.state = {
        "bit_generator": "Philox",
        "state": {
            "counter": np.array([first_word // _WORDS_PER_BLOCK, 0, 0, 0], dtype=np.uint64),
            "key": np.array([seed, tensor_index], dtype=np.uint64),
        },
        "buffer": np.zeros(_WORDS_PER_BLOCK, dtype=np.uint64),
        "buffer_pos": _WORDS_PER_BLOCK,  # empty: the next word comes from the counter
        "has_uint32": 0,
        "uinteger": 0,
    }
    return gen


def philox_words(seed: int, tensor_index: int, nwords: int) -> Words:
    """The first ``nwords`` raw uint64 words of tensor ``tensor_index``'s stream."""
    return _generator(seed, tensor_index).random_raw(nwords)


def _nwords(kind: str, n: int) -> int:
    """Words that n elements consume (word offsets of element offsets, too)."""
    return -(-n // _WORD_BITS) if kind == "rademacher" else 2 * -(-n // 2)


def _le_bytes(words: Words) -> npt.NDArray[np.uint8]:
    # Little-endian byte view + little bit order puts bit i of the stream at i.
    return words.astype("<u8", copy=False).view(np.uint8)


def _bits_to_signs(words: Words, n: int) -> F32:
    bits = np.unpackbits(_le_bytes(words), bitorder="little")[:n]
    return bits.astype(np.float32) * np.float32(2.0) - np.float32(1.0)


def _box_muller(words: Words, n: int) -> F32:
    a = words[0::2]
    b = words[1::2]
    u1 = ((a >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
    u2 = (b >> np.uint64(11)).astype(np.float64) * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    out = np.empty(2 * len(a), dtype=np.float64)
    out[0::2] = r * np.cos(2.0 * np.pi * u2)
    out[1::2] = r * np.sin(2.0 * np.pi * u2)
    return out[:n].astype(np.float32)


def rademacher(seed: int, tensor_index: int, n: int) -> torch.Tensor:
    """Float32 ±1 direction of length n for tensor ``tensor_index`` under seed S."""
    return torch.from_numpy(_bits_to_signs(philox_words(seed, tensor_index, _nwords(
        "rademacher", n)), n))


def gaussian(seed: int, tensor_index: int, n: int) -> torch.Tensor:
    """Float32 standard-normal direction (portable to the last ulp where libm agrees)."""
    words = philox_words(seed, tensor_index, _nwords("gaussian", n))
    return torch.from_numpy(_box_muller(words, n))


def direction(seed: int, tensor_index: int, n: int, kind: str = "rademacher") -> torch.Tensor:
    """z for one tensor, by kind name."""
    _check_kind(kind)
    return rademacher(seed, tensor_index, n) if kind == "rademacher" else gaussian(
        seed, tensor_index, n)


# -- fused kernels ------------------------------------------------------------

# Returns the words of elements [start, start + n) of one tensor; start is a
# multiple of CHUNK_ELEMENTS.
WordSource = Callable[[int, int], Words]


@functools.lru_cache(maxsize=16)
def _sign_table(alpha: float) -> npt.NDArray[np.void]:
    """Row b holds the 8 values ±float32(alpha) of byte b, one 32-byte item per row."""
    alpha32 = np.float32(alpha)
    bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1
    table = np.where(bits == 1, alpha32, -alpha32).astype(np.float32)
    items = np.ascontiguousarray(table).view("V32").reshape(256)
    items.setflags(write=False)  # shared by every caller through the cache
    return items


def _cpu_task(kind: str, words_of: WordSource, src: F32, dst: F32, start: int, stop: int,
              alpha32: np.float32, table: npt.NDArray[np.void]) -> None:
    if kind == "rademacher":
        words = words_of(start, stop - start)
        nbytes = -(-min(stop - start, CHUNK_ELEMENTS) // 8)
        scratch = np.empty(nbytes, dtype="V32")
        for lo in range(start, stop, CHUNK_ELEMENTS):
            hi = min(lo + CHUNK_ELEMENTS, stop)
            w0 = (lo - start) // _WORD_BITS
            idx = _le_bytes(words[w0 : w0 + _nwords(kind, hi - lo)])[: -(-(hi - lo) // 8)]
            # mode="clip" skips raising on bad indices; a byte cannot leave 0..255.
            delta = np.take(table, idx, out=scratch[: len(idx)], mode="clip")
            np.add(src[lo:hi], delta.view(np.float32)[: hi - lo], out=dst[lo:hi])
        return
    for lo in range(start, stop, CHUNK_ELEMENTS):
        hi = min(lo + CHUNK_ELEMENTS, stop)
        z = _box_muller(words_of(lo, hi - lo), hi - lo)
        np.multiply(z, alpha32, out=z)
        np.add(src[lo:hi], z, out=dst[lo:hi])


def _torch_chunk(kind: str, words: Words, src: torch.Tensor, dst: torch.Tensor,
                 alpha32: np.float32, work: torch.dtype,
                 factors: torch.Tensor | None = None) -> None:
    """Any device and dtype: words come from the CPU, the unpack runs where dst lives.

    ``factors`` (float32 powers of two, one per element) multiply ±alpha (or
    alpha·z) exactly before the add.
    """
    n, dev = src.numel(), dst.device
    a = torch.tensor(float(alpha32), dtype=torch.float32, device=dev)
    if kind == "rademacher":
        packed = torch.from_numpy(_le_bytes(words).copy()).to(dev)
        shifts = torch.arange(8, dtype=torch.uint8, device=dev)
        bits = torch.bitwise_and(torch.bitwise_right_shift(packed.unsqueeze(1), shifts), 1)
        delta = torch.where(bits.reshape(-1)[:n].bool(), a, -a)
    else:
        delta = torch.from_numpy(_box_muller(words, n)).to(dev) * a
    if factors is not None:
        delta = delta * factors.to(dev)
    dst.copy_(src.to(dev, work) + delta.to(work))


def _generated(seed: int, t: int, kind: str) -> WordSource:
    def words_of(start: int, n: int) -> Words:
        first = _nwords(kind, start)
        return _generator(seed, t, first).random_raw(_nwords(kind, n))
    return words_of


def _stored(words: Words, kind: str) -> WordSource:
    def words_of(start: int, n: int) -> Words:
        first = _nwords(kind, start)
        return words[first : first + _nwords(kind, n)]
    return words_of


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


_CPUS = os.cpu_count() or 1


def _workers() -> int:
    return max(1, min(torch.get_num_threads(), _CPUS))


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="seedfl-z")
            _pool_size = size
        return _pool


@dataclass(frozen=True)
class _Job:
    words_of: WordSource
    src: torch.Tensor
    dst: torch.Tensor
    alpha: float
    factors: torch.Tensor | None = None  # ChannelScale's 2^e, flattened


def scaled_alpha(alpha: float, scale: Scale) -> float:
    """The coefficient of a tensor with scale s: float32(alpha · s), product in float64.

    One rounding, the same on every machine; ``scale == 1.0`` returns alpha unchanged
    (so unscaled calls stay bit-identical to the rule without scales).
    """
    if isinstance(scale, ChannelScale):  # the base; the factors apply per element
        scale = scale.base
    return alpha if scale == 1.0 else float(np.float32(float(alpha) * float(scale)))


def _run(jobs: Sequence[_Job], kind: str) -> None:
    tasks: list[tuple[Any, ...]] = []
    for job in jobs:
        alpha32 = np.float32(job.alpha)
        table = _sign_table(float(alpha32))
        src, dst = job.src.reshape(-1), job.dst.reshape(-1)
        fast = (src.device.type == "cpu" and dst.device.type == "cpu"
                and src.dtype == torch.float32 and dst.dtype == torch.float32
                and job.factors is None)
        if not fast:
            # Per-element factors take this path too: they are for small tensors
            # (a norm, a classifier's rows), where one torch pass costs nothing.
            work = torch.float64 if torch.float64 in (src.dtype, dst.dtype) else torch.float32
            for lo in range(0, src.numel(), DEVICE_CHUNK_ELEMENTS):
                hi = min(lo + DEVICE_CHUNK_ELEMENTS, src.numel())
                f = None if job.factors is None else job.factors[lo:hi]
                _torch_chunk(kind, job.words_of(lo, hi - lo), src[lo:hi], dst[lo:hi],
                             alpha32, work, f)
            continue
        src_np, dst_np = src.numpy(), dst.numpy()
        for lo in range(0, src.numel(), TASK_ELEMENTS):
            hi = min(lo + TASK_ELEMENTS, src.numel())
            tasks.append((kind, job.words_of, src_np, dst_np, lo, hi, alpha32, table))
    run_grouped(tasks, lambda task: task[5] - task[4], _cpu_tasks)


def run_grouped(tasks: Sequence[T], elements: Callable[[T], int],
                run: Callable[[Sequence[T]], None]) -> None:
    """``run`` over groups of tasks of about TASK_ELEMENTS each, on the thread pool.

    Small tensors share a submission: a future costs more than a norm's add.
    """
    workers = _workers()
    if workers == 1 or len(tasks) < 2:
        run(tasks)
        return
    groups: list[list[T]] = []
    size = TASK_ELEMENTS
    for task in tasks:
        if size >= TASK_ELEMENTS:
            groups.append([])
            size = 0
        groups[-1].append(task)
        size += elements(task)
    pool = _executor(workers)
    for future in [pool.submit(run, group) for group in groups]:
        future.result()


def _cpu_tasks(tasks: Sequence[tuple[Any, ...]]) -> None:
    for task in tasks:
        _cpu_task(*task)


def _apply(pairs: Sequence[tuple[WordSource, torch.Tensor, torch.Tensor | None]],
           alpha: float, kind: str, scales: Sequence[Scale] | None = None) -> None:
    """Apply ``dst = src + alpha_i*z`` for (words, src, out) triples; out None = in place.

    alpha_i = ``scaled_alpha(alpha, scales[i])``, or alpha when scales is None; a
    ``ChannelScale`` multiplies each element's ±alpha_i by its power of two.
    """
    _check_kind(kind)
    if scales is not None and len(scales) != len(pairs):
        raise ValueError(f"{len(scales)} scales for {len(pairs)} tensors")
    jobs: list[_Job] = []
    copy_back: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for i, (words_of, tensor, out) in enumerate(pairs):
            scale = None if scales is None else scales[i]
            a = alpha if scale is None else scaled_alpha(alpha, scale)
            factors = None
            if isinstance(scale, ChannelScale):
                if scale.exponents.numel() != tensor.numel():
                    raise ValueError(f"a ChannelScale of {scale.exponents.numel()} elements "
                                     f"for a tensor of {tensor.numel()}")
                factors = scale.factors()
            if not tensor.is_floating_point():
                raise TypeError(f"add_direction_ needs a floating tensor, got {tensor.dtype}")
            src = tensor.detach()
            if out is not None and out.shape != tensor.shape:
                raise ValueError(f"out has shape {tuple(out.shape)}, "
                                 f"tensor has {tuple(tensor.shape)}")
            if a == 0.0:
                # x + 0.0 would turn -0.0 into +0.0: zero means exactly no change.
                if out is not None:
                    out.detach().copy_(src)
                continue
            dst = src if out is None else out.detach()
            if not dst.is_contiguous():
                # Work on a contiguous copy, then write back element-wise.
                work = dst.contiguous() if out is None else torch.empty(
                    dst.shape, dtype=dst.dtype, device=dst.device)
                copy_back.append((dst, work))
                src = work if out is None else src
                dst = work
            jobs.append(_Job(words_of, src.contiguous(), dst, a, factors))
        _run(jobs, kind)
        for target, work in copy_back:
            target.copy_(work)


def add_direction_(
    tensor: torch.Tensor,
    seed: int,
    tensor_index: int,
    alpha: float,
    kind: str = "rademacher",
    out: torch.Tensor | None = None,
    scale: Scale | None = None,
) -> torch.Tensor:
    """``tensor + alpha * s * z(seed, tensor_index)``, in place or into ``out``; returns it."""
    _apply([(_generated(seed, tensor_index, kind), tensor, out)], alpha, kind,
           None if scale is None else [scale])
    return tensor if out is None else out


def add_directions_(
    tensors: Sequence[torch.Tensor], seed: int, alpha: float, kind: str = "rademacher",
    scales: Sequence[Scale] | None = None,
) -> None:
    """θ_t += alpha_t · z_t(seed) for every tensor, t being its position in the list;
    alpha_t = ``scaled_alpha(alpha, scales[t])`` (alpha when scales is None)."""
    _apply([(_generated(seed, t, kind), p, None) for t, p in enumerate(tensors)], alpha, kind,
           scales)


@dataclass(frozen=True)
class PackedDirection:
    """The words of one direction, generated once (d/8 bytes for rademacher)."""

    seed: int
    kind: str
    sizes: tuple[int, ...]
    words: tuple[Words, ...]

    @classmethod
    def generate(
        cls, seed: int, sizes: Sequence[int], kind: str = "rademacher"
    ) -> PackedDirection:
        _check_kind(kind)
        words = tuple(philox_words(seed, t, _nwords(kind, n)) for t, n in enumerate(sizes))
        return cls(seed, kind, tuple(sizes), words)

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.words)

    def _source(self, t: int, tensor: torch.Tensor) -> WordSource:
        if tensor.numel() != self.sizes[t]:
            raise ValueError(
                f"tensor {t} has {tensor.numel()} elements, the direction {self.sizes[t]}")
        return _stored(self.words[t], self.kind)

    def add_(self, t: int, tensor: torch.Tensor, alpha: float,
             out: torch.Tensor | None = None, scale: Scale | None = None) -> torch.Tensor:
        """Same result as ``add_direction_(tensor, seed, t, alpha, kind, out, scale)``."""
        _apply([(self._source(t, tensor), tensor, out)], alpha, self.kind,
               None if scale is None else [scale])
        return tensor if out is None else out

    def add_all_(self, tensors: Sequence[torch.Tensor], alpha: float,
                 scales: Sequence[Scale] | None = None) -> None:
        """Same result as ``add_directions_(tensors, seed, alpha, kind, scales)``."""
        if len(tensors) != len(self.sizes):
            raise ValueError(f"{len(tensors)} tensors for a direction over {len(self.sizes)}")
        _apply([(self._source(t, p), p, None) for t, p in enumerate(tensors)], alpha,
               self.kind, scales)
