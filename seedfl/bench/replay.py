"""Replay rate (DESIGN §12): parameters per second applying one update.

Three ways to add alpha·z to every trainable tensor, measured in one run over
the same tensors (SmolLM2-135M's shapes when n_params is about its size,
otherwise a list of its layer shapes trimmed to n_params):

- ``seedfl``: ``add_directions_`` (perturbation stream v1, rademacher), one
  update per pass over θ: the one-at-a-time replay rate;
- ``randn``: ``torch.manual_seed`` + ``torch.randn`` + ``add_`` per tensor,
  what MeZO-style code does (not portable across devices, shown for contrast);
- ``plain_add``: ``add_`` of a precomputed tensor, the memory-bound ceiling.

and ``fused``: a backlog of 1, 4, 16 and 64 updates (distinct seeds) applied in
one pass by ``core.fused.add_terms_`` (what ``apply_coalesced_`` runs), as
parameters per second per update (n_params · backlog / seconds) and as ratios
to the one-at-a-time rate and to the plain add.

Each reports the best wall time of ``repeats`` runs and the CPU seconds of
that run (process time over all threads: contention from other processes
shows up as wall > cpu / threads). This module knows nothing of the network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from seedfl.core.fused import add_terms_
from seedfl.core.perturbation import PackedDirection, add_directions_

BACKLOGS = (1, 4, 16, 64)

# SmolLM2-135M: hidden 576, MLP 1536, 30 layers, 9 query / 3 key-value heads of
# 64, vocabulary 49152, embeddings tied to the LM head (counted once).
_HIDDEN, _MLP, _KV, _VOCAB, _LAYERS = 576, 1536, 192, 49152, 30
_LAYER = {
    "input_layernorm.weight": (_HIDDEN,),
    "mlp.down_proj.weight": (_HIDDEN, _MLP),
    "mlp.gate_proj.weight": (_MLP, _HIDDEN),
    "mlp.up_proj.weight": (_MLP, _HIDDEN),
    "post_attention_layernorm.weight": (_HIDDEN,),
    "self_attn.k_proj.weight": (_KV, _HIDDEN),
    "self_attn.o_proj.weight": (_HIDDEN, _HIDDEN),
    "self_attn.q_proj.weight": (_HIDDEN, _HIDDEN),
    "self_attn.v_proj.weight": (_KV, _HIDDEN),
}


def smollm2_shapes() -> list[tuple[int, ...]]:
    """Trainable shapes of SmolLM2-135M in canonical (sorted name) order."""
    named = {"model.embed_tokens.weight": (_VOCAB, _HIDDEN), "model.norm.weight": (_HIDDEN,)}
    for i in range(_LAYERS):
        named.update({f"model.layers.{i}.{k}": v for k, v in _LAYER.items()})
    return [named[k] for k in sorted(named)]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def shapes_for(n_params: int) -> list[tuple[int, ...]]:
    """SmolLM2-135M's shapes, or its layer shapes repeated and trimmed to n_params."""
    full = smollm2_shapes()
    if abs(sum(map(_numel, full)) - n_params) <= 0.05 * n_params:
        return full
    layer = list(_LAYER.values())
    shapes: list[tuple[int, ...]] = []
    left = n_params
    while left > 0:
        n = _numel(layer[len(shapes) % len(layer)])
        shapes.append((min(n, left),))
        left -= n
    return shapes


def _measure(fn: Callable[[int], None], repeats: int) -> dict[str, float]:
    best_wall, best_cpu = float("inf"), 0.0
    for i in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn(i)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    return {"seconds": best_wall, "cpu_seconds": best_cpu}


def _run_at(params: list[torch.Tensor], zs: list[torch.Tensor], shapes: list[tuple[int, ...]],
            repeats: int, backlogs: Sequence[int] = BACKLOGS) -> dict[str, Any]:
    alpha = 1e-4
    d = sum(map(_numel, shapes))

    def sign(i: int) -> float:
        # Alternate signs so repeated runs do not drift the weights.
        return alpha if i % 2 == 0 else -alpha

    def ours(i: int) -> None:
        add_directions_(params, 1000 + i // 2, sign(i))

    def randn(i: int) -> None:
        torch.manual_seed(1000 + i)
        for p in params:
            p.add_(torch.randn(p.shape), alpha=sign(i))

    def plain(i: int) -> None:
        for p, z in zip(params, zs, strict=True):
            p.add_(z, alpha=sign(i))

    def words(i: int) -> None:
        PackedDirection.generate(2000 + i, [_numel(s) for s in shapes])

    results = {
        "seedfl": _measure(ours, repeats),
        "randn": _measure(randn, repeats),
        "plain_add": _measure(plain, repeats),
        "philox_words_only": _measure(words, repeats),
    }
    for r in results.values():
        r["params_per_s"] = d / r["seconds"]
    ours_rate = results["seedfl"]["params_per_s"]
    plain_rate = results["plain_add"]["params_per_s"]
    fused: dict[str, Any] = {}
    for k in backlogs:
        def backlog(i: int, k: int = k) -> None:
            # Repeat 2m and 2m+1 take the same seeds with opposite signs.
            add_terms_(params, [(3000 + (i // 2) * k + j, sign(i)) for j in range(k)])

        r = _measure(backlog, repeats)
        rate = d * k / r["seconds"]
        fused[str(k)] = {**r, "backlog": k, "params_per_s_per_update": rate,
                         "vs_one_at_a_time": rate / ours_rate, "vs_plain_add": rate / plain_rate}
    return {
        **results,
        "fused": fused,
        "speedup_vs_randn": ours_rate / results["randn"]["params_per_s"],
        "fraction_of_plain_add": ours_rate / plain_rate,
    }


def bench_replay(n_params: int = 135_000_000, repeats: int = 3,
                 threads: Sequence[int] | None = None,
                 backlogs: Sequence[int] = BACKLOGS) -> dict[str, Any]:
    """Measure at each thread count (default: 1 and torch's current count).

    The headline numbers are those at torch's current thread count. Single-thread
    numbers are reported too: on a loaded machine torch's OpenMP workers can
    slow down badly when a core is taken, which would flatter the comparison.
    """
    default = torch.get_num_threads()
    counts = list(dict.fromkeys(threads if threads is not None else [1, default]))
    shapes = shapes_for(n_params)
    gen = torch.Generator().manual_seed(0)
    by_threads: dict[str, Any] = {}
    with torch.no_grad():
        params = [torch.randn(s, generator=gen) * 0.02 for s in shapes]
        zs = [torch.randn(s, generator=gen) for s in shapes]
        try:
            for n in counts:
                torch.set_num_threads(n)
                by_threads[str(n)] = _run_at(params, zs, shapes, repeats, backlogs)
        finally:
            torch.set_num_threads(default)
    head_threads = default if str(default) in by_threads else counts[-1]
    head = by_threads[str(head_threads)]
    return {
        "n_params": sum(map(_numel, shapes)),
        "tensors": len(shapes),
        "kind": "rademacher",
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "repeats": repeats,
        "params_per_s": head["seedfl"]["params_per_s"],
        "speedup_vs_randn": head["speedup_vs_randn"],
        "fraction_of_plain_add": head["fraction_of_plain_add"],
        "plain_add_params_per_s": head["plain_add"]["params_per_s"],
        "fused": {k: {"params_per_s_per_update": v["params_per_s_per_update"],
                      "vs_one_at_a_time": v["vs_one_at_a_time"],
                      "vs_plain_add": v["vs_plain_add"]} for k, v in head["fused"].items()},
        "threads": head_threads,
        "packed_bytes": sum(-(-_numel(s) // 64) * 8 for s in shapes),
        "by_threads": by_threads,
    }
