"""Fused replay: k pending updates applied to θ in one pass over memory.

``add_terms_(tensors, terms, kind, scales)`` does, for every trainable tensor t
(its position in the list) and every (seed S_k, coef c_k) of ``terms`` in the
given order,

    θ_t ← θ_t + a_{k,t} · z_t(S_k),   a_{k,t} = scaled_alpha(c_k, s_t)

with z from perturbation stream v1 (core/perturbation.py, DESIGN §3) and s_t
from core/scales.py (1 without ``scales``). That is what calling
``add_directions_(tensors, S_k, c_k, kind, scales)`` once per term does, but
each call streams all of θ through memory (read + write), so replaying a
backlog of k updates one at a time costs k passes at the memory-bandwidth floor.

How (CPU, float32, contiguous): every tensor is cut into tasks of
``TASK_ELEMENTS`` run on perturbation's thread pool, every task into chunks of
``CHUNK_ELEMENTS``. Each term has its own Philox generator, keyed (S_k, t) and
positioned once per task, so a chunk's words are exactly the words of the v1
stream for those elements. A chunk of θ is read from memory once; while it is
in cache each term's words for it are unpacked through that term's 256-entry
table of ±float32(a) (8 elements per random byte) and added into the chunk in
place; the chunk goes back to memory once. With numba installed (the default),
rademacher chunks go instead to core/fused_kernel.py, whose compiled loop tests
each bit and adds ±a in one vectorised pass per term: the same float32
additions in the same order, at about 2.5× less CPU per term than those numpy
calls (``USE_COMPILED`` switches it off). Gaussian terms are fused the same
way (Box-Muller per chunk, times a, added). Memory traffic is one read and one
write of θ per ``BLOCK_TERMS`` terms (a longer backlog goes in blocks); the
cost per term is the Philox words (≈ 8 ns per 64 elements, from numpy), the
unpacking and an add in cache, which is CPU work, so the gain grows with the
cores that share one memory bus (bench/results/replay.json).

Exactness: per element the operations are those of one-at-a-time replay in
the same order, fl(…fl(fl(θ + d_1) + d_2)… + d_k) with d_j = a_j·z_j (exactly
±a_j for rademacher, fl(a_j·z_j) for gaussian), so the result is bit-identical
to sequential ``add_directions_`` calls: no threading, chunking or k changes a
bit, and a node that replays a backlog in one call ends where one that applied
it update by update does. (A separate float32 accumulator Σ d_j added to θ
once would cost the same here and round differently from sequential replay;
in-place accumulation keeps replicas that batch differently bit-identical.)
Terms whose coefficient is 0 for a tensor are skipped (``-0.0`` stays
``-0.0``); one term is ``add_directions_`` itself.

Order of terms: float32 addition is not associative, so a permutation π of the
terms may change the result. By the recursive-summation bound (Higham, Accuracy
and Stability of Numerical Algorithms, §4.2) each order is within
γ_k·(|θ| + Σ_j |d_j|) of the exact sum, γ_k = k·u/(1 − k·u), u = 2^-24, so

    |θ_π − θ_σ| ≤ 2·γ_k·(|θ| + Σ_j |d_j|)      elementwise, per tensor

(≈ k·2^-23 relative to |θ| + Σ_j |a_j|·s_t for rademacher). Per-origin seq
order is the caller's job (``Engine.apply_many`` validates it).

Fallback: tensors that are not CPU float32 contiguous (GPU, half, float64,
strided views) take the per-term path of ``perturbation`` (same result as
today, one pass per term, chunked on the device).

This module knows nothing of updates, codes, learning rates or where the terms
came from; it only knows the stream and the scales it is given.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from seedfl.core import fused_kernel
from seedfl.core import perturbation as _pz
from seedfl.core.fused_kernel import add_signed_
from seedfl.core.perturbation import (
    _apply,
    _box_muller,
    _check_kind,
    _generated,
    _le_bytes,
    _nwords,
    _position,
    _sign_table,
    add_directions_,
    scaled_alpha,
)
from seedfl.core.scales import ChannelScale, Scale

__all__ = ["BLOCK_TERMS", "CHUNK_ELEMENTS", "TASK_ELEMENTS", "add_terms_", "order_bound"]

# 256 Ki float32 of θ (1 MiB) plus the unpacked delta (1 MiB) stay in cache
# (L2 + L3) while every term passes over them; measured on 134.5 M params at 16
# terms, 64 Ki runs at ~90% of this (per-call overhead), 1 Mi the same. A
# multiple of 64 elements (whole words) for either kind.
CHUNK_ELEMENTS = 1 << 18
# One thread-pool task; a multiple of 256 elements, so each task starts on a
# Philox block (4 words) for either kind.
TASK_ELEMENTS = _pz.TASK_ELEMENTS
# Terms per pass: a longer backlog (log replay hands over up to 65,536) takes one
# pass per block, so the sign tables (8 KiB per distinct float32 coefficient)
# and kept generators stay bounded; the memory pass is then < 2% of the work.
BLOCK_TERMS = 64

# (seed, float32 alpha, sign table; empty for gaussian) of one term on one tensor.
_Term = tuple[int, np.float32, npt.NDArray[np.void]]
_NO_TABLE: npt.NDArray[np.void] = np.empty(0, dtype="V32")
# (flat θ_t as numpy, t, first element, end element, the tensor's terms).
_Task = tuple[npt.NDArray[np.float32], int, int, int, list[_Term]]

_local = threading.local()
# Rademacher terms take core/fused_kernel.py's compiled loop when numba is
# installed (same bits as the numpy path; tests switch this off to compare).
USE_COMPILED = True
_LITTLE = sys.byteorder == "little"  # the kernel reads uint64 words as uint32 halves


def _generators(k: int) -> list[np.random.Philox]:
    """This thread's k kept generators (constructing one costs ~17 µs, keying ~2 µs)."""
    gens: list[np.random.Philox] = getattr(_local, "gens", [])
    while len(gens) < k:
        gens.append(np.random.Philox(key=np.zeros(2, dtype=np.uint64)))
    _local.gens = gens
    return gens[:k]


def _chunks(kind: str, x: npt.NDArray[np.float32], t: int, lo: int, hi: int,
            terms: list[_Term], scratch: npt.NDArray[np.void],
            index: npt.NDArray[np.intp]) -> None:
    gens = _generators(len(terms))
    compiled = _compiled_terms(terms) if kind == "rademacher" else None
    first = _nwords(kind, lo)
    for gen, (seed, _, _) in zip(gens, terms, strict=True):
        _position(gen, seed, t, first)
    for c in range(lo, hi, CHUNK_ELEMENTS):
        e = min(c + CHUNK_ELEMENTS, hi)
        n, nw = e - c, _nwords(kind, e - c)
        chunk = x[c:e]
        if kind == "rademacher" and compiled is not None:
            rows = compiled[0][: len(terms) * 2 * nw].reshape(len(terms), 2 * nw)
            for row, gen in zip(rows, gens, strict=True):
                np.copyto(row, gen.random_raw(nw).view(np.uint32))
            add_signed_(chunk, rows, compiled[1], compiled[2])
            continue
        if kind == "rademacher":
            nb = -(-n // 8)
            delta, idx = scratch[:nb], index[:nb]
            values = delta.view(np.float32)[:n]
            for gen, (_, _, table) in zip(gens, terms, strict=True):
                # take() converts byte indices to intp itself, at twice the cost of
                # this copy; mode="clip" skips raising (a byte cannot leave 0..255).
                np.copyto(idx, _le_bytes(gen.random_raw(nw))[:nb])
                np.take(table, idx, out=delta, mode="clip")
                np.add(chunk, values, out=chunk)
            continue
        for gen, (_, alpha32, _) in zip(gens, terms, strict=True):
            z = _box_muller(gen.random_raw(nw), n)
            np.multiply(z, alpha32, out=z)
            np.add(chunk, z, out=chunk)


def _compiled_terms(terms: list[_Term]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32],
                                                 npt.NDArray[np.float32]] | None:
    """(this thread's word rows, 2·a, −a) for the compiled kernel, or None to take
    the numpy path (no numba, not little-endian, or a coefficient whose double
    overflows, where b·2a − a would not be exactly ±a)."""
    if not (USE_COMPILED and fused_kernel.AVAILABLE and _LITTLE):
        return None
    a = np.array([alpha for _, alpha, _ in terms], dtype=np.float32)
    with np.errstate(over="ignore"):
        a2 = a * np.float32(2.0)
    if not np.isfinite(a2).all():
        return None
    rows: npt.NDArray[np.uint32] | None = getattr(_local, "rows", None)
    need = len(terms) * -(-CHUNK_ELEMENTS // 32)
    if rows is None or rows.size < need:  # flat: (terms, words) views are C-contiguous
        rows = _local.rows = np.empty(need, dtype=np.uint32)
    return rows, a2, -a


def _run_group(kind: str, tasks: Sequence[_Task]) -> None:
    scratch = np.empty(CHUNK_ELEMENTS // 8, dtype="V32")
    index = np.empty(CHUNK_ELEMENTS // 8, dtype=np.intp)
    for x, t, lo, hi, terms in tasks:
        _chunks(kind, x, t, lo, hi, terms, scratch, index)


def _run(kind: str, tasks: list[_Task]) -> None:
    _pz.run_grouped(tasks, lambda task: task[3] - task[2],
                    lambda group: _run_group(kind, group))


def _fast(p: torch.Tensor) -> bool:
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()


def add_terms_(tensors: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]],
               kind: str = "rademacher", scales: Sequence[Scale] | None = None) -> None:
    """θ_t += Σ_k scaled_alpha(coef_k, s_t) · z_t(seed_k), in term order, in place.

    Bit-identical to ``for seed, coef in terms: add_directions_(tensors, seed,
    coef, kind, scales)``, in one pass over θ for CPU float32 tensors.
    """
    _check_kind(kind)
    if scales is not None and len(scales) != len(tensors):
        raise ValueError(f"{len(scales)} scales for {len(tensors)} tensors")
    for p in tensors:
        if not p.is_floating_point():
            raise TypeError(f"add_direction_ needs a floating tensor, got {p.dtype}")
    if TASK_ELEMENTS % 256 or CHUNK_ELEMENTS % 64:
        raise ValueError("TASK_ELEMENTS must be a multiple of 256, CHUNK_ELEMENTS of 64")
    live = [(seed, coef) for seed, coef in terms if coef != 0.0]
    for i in range(0, len(live), BLOCK_TERMS):
        _add_block(tensors, live[i : i + BLOCK_TERMS], kind, scales)


def _add_block(tensors: Sequence[torch.Tensor], live: Sequence[tuple[int, float]], kind: str,
               scales: Sequence[Scale] | None) -> None:
    if len(live) == 1:
        add_directions_(tensors, live[0][0], live[0][1], kind, scales)
        return
    # A ChannelScale tensor (per-element factors) takes perturbation's torch path.
    slow = [t for t, p in enumerate(tensors)
            if not _fast(p) or (scales is not None and isinstance(scales[t], ChannelScale))]
    tables: dict[float, npt.NDArray[np.void]] = {}
    tasks: list[_Task] = []
    with torch.no_grad():
        for t, p in enumerate(tensors):
            if t in slow or p.numel() == 0:
                continue
            mine: list[_Term] = []
            for seed, coef in live:
                a = coef if scales is None else scaled_alpha(coef, scales[t])
                if a == 0.0:
                    continue  # x + 0.0 would turn -0.0 into +0.0
                a32 = np.float32(a)
                table = _NO_TABLE
                if kind == "rademacher":
                    if float(a32) not in tables:  # the cache in perturbation keeps 16
                        tables[float(a32)] = _sign_table(float(a32))
                    table = tables[float(a32)]
                mine.append((seed, a32, table))
            if not mine:
                continue
            x = p.detach().reshape(-1).numpy()
            for lo in range(0, x.size, TASK_ELEMENTS):
                tasks.append((x, t, lo, min(lo + TASK_ELEMENTS, x.size), mine))
        _run(kind, tasks)
        for seed, coef in live if slow else []:
            _apply([(_generated(seed, t, kind), tensors[t], None) for t in slow], coef, kind,
                   None if scales is None else [scales[t] for t in slow])


def order_bound(theta: torch.Tensor, deltas: Sequence[float]) -> torch.Tensor:
    """The elementwise bound 2·γ_k·(|θ| + Σ_j |d_j|) on how far two orders of k
    terms with |d_j| ≤ ``deltas[j]`` can end apart, θ being the start (float64)."""
    k = len(deltas)
    u = 2.0**-24
    gamma = k * u / (1.0 - k * u)
    return 2.0 * gamma * (theta.detach().double().abs() + float(sum(abs(d) for d in deltas)))
