"""A cache of the frozen prefix of a decoder: run only the layers that can change.

When every trainable tensor sits at or above decoder layer k, the hidden state
entering layer k is a pure function of a row's tokens: ``FrozenPrefix`` computes it
once per row, keeps a float32 copy (key: the row's unpadded token ids), and while
``run(batch, fn)`` calls ``fn`` (a forward of the model, e.g. ``task.loss``) the
layers below k are stubbed out: layers 0..k-2 pass hidden states through, and layer
k-1 returns the cached batch hidden state (real rows from the cache, padding zeros).

- The layer stack is the largest ``ModuleList`` whose children share one class
  (``model.model.layers`` for Llama, also under a peft wrapper).
- k is found on the first ``run`` by hooks recording module call order: the number
  of layers that return before any module holding a trainable tensor starts. A
  trainable input embedding, a tied head, LoRA in layer 0 give k = 0: no cache.
- The same first ``run`` compares ``fn`` with and without the cache and turns the
  cache off (one warning) when they differ beyond rtol 1e-4.
- Missing rows are computed by a forward aborted when layer k-1 returns; when the
  cache holds ``budget_mb`` no more rows are added (rows not cached are recomputed:
  correct, slower). The last batch's assembled state is kept for the next call on
  the same batch object (the estimator's second pass).

It never writes a weight. It does not know: tasks, losses or perturbations (``fn``
is opaque); models whose prefix reads anything but the row's tokens and positions
0..T-1 (left padding, cross-row mixing, a trainable tensor read by a module that
does not hold it): the first-run check catches what it can, not everything; a
prefix whose frozen weights are changed behind its back (call ``clear``).
Not thread-safe, like the estimator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from seedfl.training.task import EncodedBatch

log = logging.getLogger(__name__)
R = TypeVar("R")
_RTOL = 1e-4


class _Stop(Exception):
    """Raised by the capture hook to abort a forward once the prefix is done."""


def find_layers(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The decoder's stack of repeated blocks: the largest one-class ModuleList."""
    best: torch.nn.ModuleList | None = None
    for module in model.modules():
        if (isinstance(module, torch.nn.ModuleList) and len(module) > 0
                and len({type(child) for child in module}) == 1
                and (best is None or len(module) > len(best))):
            best = module
    return best


def _as_float(value: Any) -> float:
    """The number the first-run check compares: a loss, or a Scores' loss sum."""
    return float(getattr(value, "loss_sum", value))


class FrozenPrefix:
    def __init__(self, model: torch.nn.Module, trainable: Sequence[torch.Tensor],
                 budget_mb: float = 1024.0) -> None:
        self.model = model
        self.budget_bytes = int(budget_mb * 2**20)
        self.layers = find_layers(model)
        ids = {id(p) for p in trainable}
        self._holders = [m for m in model.modules()
                         if any(p is not None and id(p) in ids for p in m._parameters.values())]
        self.k: int | None = None  # None until the first run discovers it
        self.enabled = self.budget_bytes > 0 and self.layers is not None
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.cached_bytes = 0
        self._tuple_len = 0  # 0: layers return a tensor; n: a tuple of n
        self._last: tuple[EncodedBatch, torch.Tensor] | None = None

    @classmethod
    def for_bundle(cls, bundle: Any, budget_mb: float) -> FrozenPrefix:
        return cls(bundle.model, bundle.model_params, budget_mb)

    @property
    def rows(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()
        self.cached_bytes = 0
        self._last = None

    # -- the public call --------------------------------------------------------
    def run(self, batch: EncodedBatch, fn: Callable[[], R]) -> R:
        """``fn()``, with the frozen prefix taken from the cache when it can be."""
        if not self.enabled:
            return fn()
        if self.k is None:
            return self._first_run(batch, fn)
        hidden = self._hidden(batch)
        if hidden is None:
            return fn()
        return self._stubbed(hidden, fn)

    # -- discovery and the first-run check --------------------------------------
    def _first_run(self, batch: EncodedBatch, fn: Callable[[], R]) -> R:
        full = self._discover(fn)
        if self.k == 0:
            self.enabled = False
            return full
        hidden = self._hidden(batch)
        if hidden is None:
            return full
        cached = self._stubbed(hidden, fn)
        a, b = _as_float(full), _as_float(cached)
        if math.isfinite(a) and abs(a - b) <= _RTOL * max(abs(a), 1e-6):
            return cached  # what every later run gives: a first estimate is like the rest
        log.warning("frozen-prefix cache off for this run: a forward with it gave %r, "
                    "without it %r (this architecture does not fit its assumptions)", b, a)
        self.enabled = False
        self.clear()
        return full

    def _discover(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` once with hooks noting call order; set k from it."""
        assert self.layers is not None
        clock = [0]
        ends: dict[int, list[int]] = {}
        first_trainable: list[int] = []
        layer_index = {id(m): i for i, m in enumerate(self.layers)}
        holders = {id(m) for m in self._holders}

        def pre(module: torch.nn.Module, args: Any) -> None:
            clock[0] += 1
            if id(module) in holders and not first_trainable:
                first_trainable.append(clock[0])

        def post(module: torch.nn.Module, args: Any, output: Any) -> None:
            clock[0] += 1
            if id(module) in layer_index:
                ends.setdefault(layer_index[id(module)], []).append(clock[0])

        handles = [m.register_forward_pre_hook(pre) for m in self.model.modules()]
        handles += [m.register_forward_hook(post) for m in self.layers]
        try:
            result = fn()
        finally:
            for h in handles:
                h.remove()
        times = [ends.get(i, []) for i in range(len(self.layers))]
        in_order = all(len(t) == 1 for t in times) and all(
            times[i][0] < times[i + 1][0] for i in range(len(times) - 1))
        if not first_trainable or not in_order:
            self.k = 0  # nothing trainable ran in a module, or layers ran oddly: no cache
        else:  # a layer can be skipped when it returned before anything trainable ran
            self.k = sum(1 for t in times if t[0] < first_trainable[0])
        return result

    # -- the cache --------------------------------------------------------------
    def _hidden(self, batch: EncodedBatch) -> torch.Tensor | None:
        """The (B, T, H) state leaving layer k-1 for ``batch``, padding zeros."""
        if self._last is not None and self._last[0] is batch:
            return self._last[1]
        lengths = batch.attention_mask.sum(dim=1).tolist()
        mask = batch.attention_mask
        keys: list[tuple[int, ...]] = []
        for b, n in enumerate(lengths):
            if not bool(mask[b, :n].all()):
                return None  # not right-padded: the cache key would not be the row
            keys.append(tuple(batch.input_ids[b, :n].tolist()))
        missing = sorted({key for key in keys if key not in self._cache})
        fresh = self._capture(missing) if missing else {}
        rows = [self._cache.get(key, fresh.get(key)) for key in keys]
        first = rows[0]
        assert first is not None
        with torch.inference_mode():
            hidden = torch.zeros((len(keys), batch.input_ids.shape[1], first.shape[-1]),
                                 dtype=first.dtype, device=first.device)
            for b, row in enumerate(rows):
                assert row is not None
                hidden[b, : row.shape[0]] = row
        self._last = (batch, hidden)
        return hidden

    def _capture(self, keys: list[tuple[int, ...]]) -> dict[tuple[int, ...], torch.Tensor]:
        """Run the prefix on ``keys`` (a right-padded sub-batch); cache what fits."""
        assert self.layers is not None and self.k is not None
        width = max(len(key) for key in keys)
        ids = torch.zeros((len(keys), width), dtype=torch.long)
        mask = torch.zeros((len(keys), width), dtype=torch.long)
        for b, key in enumerate(keys):
            ids[b, : len(key)] = torch.tensor(key, dtype=torch.long)
            mask[b, : len(key)] = 1
        got: list[torch.Tensor] = []

        def grab(module: torch.nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, tuple):
                self._tuple_len = len(output)
                output = output[0]
            got.append(output)
            raise _Stop

        device = next(self.layers.parameters()).device
        handle = self.layers[self.k - 1].register_forward_hook(grab)
        try:
            with torch.inference_mode():
                self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not got:
            raise RuntimeError(f"layer {self.k - 1} of the decoder never ran")
        out: dict[tuple[int, ...], torch.Tensor] = {}
        with torch.inference_mode():
            for b, key in enumerate(keys):
                row = got[0][b, : len(key)].float().clone()
                out[key] = row
                size = row.numel() * row.element_size()
                if self.cached_bytes + size <= self.budget_bytes:
                    self._cache[key] = row
                    self.cached_bytes += size
        return out

    # -- running with the stubs -------------------------------------------------
    def _stubbed(self, hidden: torch.Tensor, fn: Callable[[], R]) -> R:
        assert self.layers is not None and self.k is not None
        n = self._tuple_len

        def wrap(h: torch.Tensor) -> Any:
            return (h, *([None] * (n - 1))) if n else h

        def passthrough(*args: Any, **kwargs: Any) -> Any:
            return wrap(args[0] if args else kwargs["hidden_states"])

        def last(*args: Any, **kwargs: Any) -> Any:
            h = args[0] if args else kwargs["hidden_states"]
            return wrap(hidden.to(h.dtype))

        stubbed = list(self.layers)[: self.k]
        for i, layer in enumerate(stubbed):
            layer.forward = last if i == self.k - 1 else passthrough  # type: ignore[method-assign]
        try:
            return fn()
        finally:
            for layer in stubbed:
                del layer.forward
