"""The compiled inner loop of fused rademacher replay (numba), when numba is there.

``add_signed_(x, words, a2, na)`` does, for every term j (row j of ``words``)
in row order and every element i of the float32 chunk ``x``,

    x[i] ← fl(x[i] + (b_j(i) · a2[j] + na[j]))

where b_j(i) is bit (i mod 32) of uint32 word i // 32 of row j: the bits of
perturbation stream v1 seen as little-endian uint32 halves of its uint64 words
(bit i of the stream at element i, as DESIGN §3 states it). With a2 = 2·a and
na = −a (both float32), b·a2 + na is exactly +a or −a (0·2a − a and 2a − a are
exact in float32 for any finite a whose double is finite), so every element
goes through the same float32 additions, in the same order, as sequential
one-term-at-a-time replay: the result is bit-identical to it, and to the numpy
path in core/fused.py.

Why a compiled loop: per term the numpy path runs three array operations over
the chunk (bytes to indices, a table gather, an add), each one a trip through
cache; here the bit test, the sign and the add are one vectorised loop (AVX2
here: 8 elements per instruction), about 2.5× less CPU per term. The Philox
words still come from numpy (the stream's definition), so the gain per term is
bounded by their cost (≈ 8 ns per 64 elements here).

``AVAILABLE`` is False when numba cannot be imported (the package is optional
at run time); core/fused.py then takes its numpy path, with the same result.
The loop is compiled on first use (about a second) and cached on disk.

This module knows nothing of seeds, tensors or scales: words and coefficients in,
a chunk updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["AVAILABLE", "add_signed_"]

_Kernel = Callable[[Any, Any, Any, Any], None]


def _compile() -> _Kernel | None:
    try:
        from numba import njit
    except ImportError:
        return None

    # contract only: fusing b·a2 + na into one fma is still exact (see above);
    # reassociating the additions over terms, which full fastmath allows, is not.
    @njit(nogil=True, boundscheck=False, cache=True, fastmath={"contract"})
    def kernel(x: Any, words: Any, a2: Any, na: Any) -> None:  # pragma: no cover - compiled
        n = x.size
        full = n // 32
        one = np.uint32(1)
        for j in range(words.shape[0]):
            row = words[j]
            p, m = a2[j], na[j]
            for w in range(full):
                bits = row[w]
                base = w * 32
                for b in range(32):
                    x[base + b] += np.float32((bits >> np.uint32(b)) & one) * p + m
            if full * 32 < n:
                bits = row[full]
                for b in range(n - full * 32):
                    x[full * 32 + b] += np.float32((bits >> np.uint32(b)) & one) * p + m

    return kernel


_KERNEL = _compile()
AVAILABLE = _KERNEL is not None


def add_signed_(x: npt.NDArray[np.float32], words: npt.NDArray[np.uint32],
                a2: npt.NDArray[np.float32], na: npt.NDArray[np.float32]) -> None:
    """x += ±a_j term by term (see the module docstring); needs ``AVAILABLE``.

    ``words`` is (terms, ≥ ceil(len(x) / 32)) uint32, C-contiguous rows; a2 and
    na are float32 vectors of one entry per term.
    """
    if _KERNEL is None:
        raise RuntimeError("numba is not installed; core/fused.py uses its numpy path")
    _KERNEL(x, words, a2, na)
