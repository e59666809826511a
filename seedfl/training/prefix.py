"""A cache of the frozen prefix of a decoder: run only the layers that can change.

When every trainable tensor sits at or above decoder layer k, the hidden state
entering layer k is a pure function of a row's tokens: ``FrozenPrefix`` computes it
once per row, keeps a float32 copy (key: the row's unpadded token ids), and inside
``with prefix.active(batch):`` (one forward of the model on ``batch``, e.g.
``task.loss``) the layers below k are stubbed out via an instance ``forward`` (their
hooks still fire): layers 0..k-2 pass hidden states through, and layer k-1 returns
the cached batch state (real rows from the cache, padding zeros; causal attention
and right padding mean no real position reads it). ``run(batch, fn)`` is
``with active(batch): return fn()``. ``FrozenPrefix.build(bundle, budget_mb)``
finds k at once and gives None when there is nothing to skip.

- The layer stack is the largest ``ModuleList`` whose children share one class
  (``model.model.layers`` for Llama, also under a peft wrapper).
- k is found by a forward of a dummy row with hooks recording module call order:
  the number of layers that return before any module holding a trainable tensor
  starts. A trainable input embedding, a tied head, LoRA in layer 0 give k = 0.
- The first ``active`` compares the model's logits (real positions) with and
  without the cache and turns the cache off (one warning) when they differ beyond
  rtol 1e-4 of the largest logit.
- Missing rows are computed by a forward aborted when layer k-1 returns; when the
  cache holds ``budget_mb`` no more rows are added (rows not cached are recomputed:
  correct, slower). The last batch's assembled state is kept for the next call on
  the same batch object (the estimator's second pass).

It never writes a weight. It does not know: tasks, losses or perturbations (the
forward in the block is opaque); models whose prefix reads anything but the row's
tokens and positions 0..T-1 (left padding, cross-row mixing, a trainable tensor read
by a module that does not hold it): the first check catches what it can, not all;
frozen weights changed behind its back (call ``clear``). Not thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def _logits(output: Any) -> torch.Tensor:
    logits: torch.Tensor = output.logits if hasattr(output, "logits") else output[0]
    return logits


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
        self._checked = False  # the first active() compares with the full forward

    @classmethod
    def for_bundle(cls, bundle: Any, budget_mb: float) -> FrozenPrefix:
        """A prefix that finds k on its first use (may turn out to be k = 0: off)."""
        return cls(bundle.model, bundle.model_params, budget_mb)

    @classmethod
    def build(cls, bundle: Any, budget_mb: float = 1024) -> FrozenPrefix | None:
        """The prefix of ``bundle``'s model, or None: budget 0, no layer stack, k = 0."""
        prefix = cls(bundle.model, bundle.model_params, budget_mb)
        if not prefix.enabled:
            return None
        prefix._find_k()
        return prefix if prefix.enabled else None

    @property
    def rows(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()
        self.cached_bytes = 0
        self._last = None

    # -- the public calls -------------------------------------------------------
    @contextmanager
    def active(self, batch: EncodedBatch) -> Iterator[None]:
        """For one forward of the model on ``batch``: the prefix from the cache."""
        hidden = self._ready(batch)
        if hidden is None:
            yield
            return
        with self._stubs(hidden):
            yield

    def run(self, batch: EncodedBatch, fn: Callable[[], R]) -> R:
        """``fn()`` (a forward on ``batch``) with the frozen prefix from the cache."""
        with self.active(batch):
            return fn()

    def _ready(self, batch: EncodedBatch) -> torch.Tensor | None:
        """The cached state for ``batch``, or None when this forward runs in full."""
        if not self.enabled:
            return None
        if self.k is None:
            self._find_k()
            if not self.enabled:
                return None
        hidden = self._hidden(batch)
        if hidden is None or self._checked:
            return hidden
        self._checked = True
        with torch.inference_mode():
            ids, mask = batch.input_ids.to(hidden.device), batch.attention_mask.to(hidden.device)
            full = _logits(self._forward(ids, mask)).float()
            with self._stubs(hidden):
                cached = _logits(self._forward(ids, mask)).float()
            real = mask.bool()
            diff = (full[real] - cached[real]).abs().max().item()
            scale = full[real].abs().max().item()
        if diff <= _RTOL * max(scale, 1e-6):
            return hidden
        log.warning("frozen-prefix cache off for this run: logits with it differ from "
                    "those without by %.3g (largest %.3g); this architecture does not fit "
                    "its assumptions", diff, scale)
        self.enabled = False
        self.clear()
        return None

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        return self.model(input_ids=ids, attention_mask=mask, use_cache=False)

    # -- discovery --------------------------------------------------------------
    def _find_k(self) -> None:
        """Set k from a forward of a dummy row; k = 0 turns the prefix off."""
        assert self.layers is not None
        device = next(self.layers.parameters()).device
        ids = torch.ones((1, 4), dtype=torch.long, device=device)
        with torch.inference_mode():
            self._discover(lambda: self._forward(ids, torch.ones_like(ids)))
        if self.k == 0:
            self.enabled = False

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
    @contextmanager
    def _stubs(self, hidden: torch.Tensor) -> Iterator[None]:
        """Layers 0..k-1 replaced (instance ``forward``) while the block runs."""
        assert self.layers is not None and self.k is not None
        n = self._tuple_len

        def wrap(h: torch.Tensor) -> Any:
            return (h, *([None] * (n - 1))) if n else h

        def passthrough(*args: Any, **kwargs: Any) -> Any:
            return wrap(args[0] if args else kwargs["hidden_states"])

        def last(*args: Any, **kwargs: Any) -> Any:
            h = args[0] if args else kwargs["hidden_states"]
            return wrap(hidden.to(h.dtype))

        missing = object()
        stubbed = list(self.layers)[: self.k]
        saved = [layer.__dict__.get("forward", missing) for layer in stubbed]
        try:
            for i, layer in enumerate(stubbed):
                layer.forward = last if i == self.k - 1 else passthrough
            yield
        finally:
            for layer, old in zip(stubbed, saved, strict=True):
                if old is missing:
                    layer.__dict__.pop("forward", None)
                else:
                    layer.forward = old  # e.g. an accelerate hook's wrapper
