"""The SPSA / MeZO projected-gradient estimate, with functional perturbation (DESIGN §2).

``Estimator(bundle, task, eps, kind).estimate(batch, seed)`` returns
``g = (L(θ + εz) − L(θ − εz)) / 2ε`` on one batch, model in eval mode, z = z(seed).

θ is never written. While a module that holds trainable tensors runs its forward,
each such tensor is replaced in the module's parameter table by θ_t ± ε·z_t,
computed from the fp32 master into a scratch buffer, and the Parameter is put back
when the module returns (forward hooks, registered only for the duration of
``estimate``). So after ``estimate`` every weight is bit-identical to before, in any
precision, and the extra memory is one module's worth of trainable tensors (the
scratch is a stack: it also covers modules nested in modules). A tied tensor is one
canonical index t, so every module that holds it sees the same z.

With ``prefix=FrozenPrefix.build(bundle)`` (prefix.py) both passes take the hidden state
below the lowest trainable layer from its cache and run only the layers above: the
hooks above still see θ ± εz, and nothing below can (it holds no trainable tensor).

Not thread-safe: while ``estimate`` runs, every forward of this model (from any
thread) would see the perturbation; the engine's single thread runs them all.

A trainable tensor that is read outside the forward of every module holding it
(e.g. a ParameterDict entry) is detected after the first pass and from then on
swapped for the whole pass instead: exact, at the cost of its own size. A tensor
held by a module but also read by another module's code directly would see θ
there, not θ ± εz; transformers and peft models do not do this.

This module knows nothing of codecs, learning rates or the swarm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seedfl.core.perturbation import PackedDirection, add_direction_
from seedfl.core.scales import Scale
from seedfl.training.model import ModelBundle
from seedfl.training.prefix import FrozenPrefix
from seedfl.training.task import EncodedBatch, Task

_Key = tuple[torch.dtype, torch.device]


@dataclass(frozen=True)
class Estimate:
    g: float
    loss_plus: float
    loss_minus: float


class _Scratch:
    """A stack of contiguous views into one preallocated buffer per (dtype, device)."""

    def __init__(self, sizes: dict[_Key, int]) -> None:
        self._sizes = sizes
        self._buf: dict[_Key, torch.Tensor] = {}
        self._top: dict[_Key, int] = dict.fromkeys(sizes, 0)
        self._pushed: list[tuple[_Key, int]] = []

    def allocate(self) -> None:
        for (dtype, device), n in self._sizes.items():
            if (dtype, device) not in self._buf:
                self._buf[(dtype, device)] = torch.empty(n, dtype=dtype, device=device)

    def push(self, like: torch.Tensor) -> torch.Tensor:
        key, n = (like.dtype, like.device), like.numel()
        top = self._top.get(key, 0)
        if top + n > self._sizes.get(key, 0):
            # Nesting the module tree did not predict (a module calling one it does
            # not contain): a temporary of its own, correct and freed on return.
            self._pushed.append((key, 0))
            return torch.empty(like.shape, dtype=like.dtype, device=like.device)
        self._top[key] = top + n
        self._pushed.append((key, n))
        return self._buf[key][top : top + n].view(like.shape)

    def pop(self) -> None:
        key, n = self._pushed.pop()
        self._top[key] -= n

    def reset(self) -> None:
        self._top = dict.fromkeys(self._sizes, 0)
        self._pushed = []


class Estimator:
    def __init__(self, bundle: ModelBundle, task: Task, eps: float,
                 kind: str = "rademacher", scales: Sequence[Scale] | None = None,
                 prefix: FrozenPrefix | None = None) -> None:
        if not eps > 0 or not math.isfinite(eps):
            raise ValueError(f"eps must be a positive finite number, got {eps}")
        self.bundle = bundle
        self.task = task
        self.eps = float(eps)
        self.kind = kind
        # s_t of each tensor (core/scales.py): the pass sees θ_t ± ε·s_t·z_t.
        self.scales = tuple(scales) if scales is not None else (1.0,) * len(bundle.params)
        if len(self.scales) != len(bundle.params):
            raise ValueError(f"{len(self.scales)} scales for {len(bundle.params)} tensors")
        # Both passes run only the layers above the frozen prefix when one is given.
        self.prefix = prefix
        index = {id(p): t for t, p in enumerate(bundle.model_params)}
        # Every (module, attribute) that holds a trainable tensor, by module.
        self._held: dict[torch.nn.Module, list[tuple[str, int]]] = {}
        names: dict[torch.nn.Module, str] = {}
        for name, module in bundle.model.named_modules():
            names[module] = name
            for attr, p in module._parameters.items():
                if p is not None and id(p) in index:
                    self._held.setdefault(module, []).append((attr, index[id(p)]))
        self._scratch = _Scratch(self._stack_sizes(names))
        self._eager: set[int] = set()
        self._seen: set[int] = set()
        self._saved: list[list[tuple[torch.nn.Module, str, torch.nn.Parameter]]] = []
        self._seed = 0
        self._alpha = 0.0
        # The packed words of the last estimate's z (rademacher: d/8 bytes), generated
        # once for every pass; a caller may reuse it to apply the update itself.
        self.last_direction: PackedDirection | None = None

    def _stack_sizes(self, names: dict[torch.nn.Module, str]) -> dict[_Key, int]:
        own: dict[str, dict[_Key, int]] = {}
        for module, held in self._held.items():
            sizes = own.setdefault(names[module], {})
            for attr, _ in held:
                p = module._parameters[attr]
                assert p is not None
                key = (p.dtype, p.device)
                sizes[key] = sizes.get(key, 0) + p.numel()
        # A module's scratch sits on top of its hooked ancestors' (forwards nest).
        need: dict[_Key, int] = {}
        for name in own:
            total: dict[_Key, int] = {}
            for outer, sizes in own.items():
                if outer in ("", name) or name.startswith(outer + "."):
                    for key, n in sizes.items():
                        total[key] = total.get(key, 0) + n
            for key, n in total.items():
                need[key] = max(need.get(key, 0), n)
        return need

    @property
    def scratch_elements(self) -> int:
        """Extra elements held for perturbed tensors (the memory cost of an estimate)."""
        return sum(self._scratch._sizes.values())

    # -- hooks -----------------------------------------------------------------
    def _perturbed(self, t: int, out: torch.Tensor) -> torch.Tensor:
        master = self.bundle.params[t]
        scale = self.scales[t]
        if self.last_direction is not None:
            return self.last_direction.add_(t, master, self._alpha, out=out, scale=scale)
        return add_direction_(master, self._seed, t, self._alpha, self.kind, out=out,
                              scale=scale)

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        # Pushed first, so that if this hook fails half-way the (always called) post
        # hook still pops this module's entry, restoring what was swapped so far.
        saved: list[tuple[torch.nn.Module, str, torch.nn.Parameter]] = []
        self._saved.append(saved)
        for attr, t in self._held[module]:
            if t in self._eager:
                continue
            original = module._parameters[attr]
            assert original is not None
            buf = self._perturbed(t, self._scratch.push(original))
            module._parameters[attr] = buf  # type: ignore[assignment]
            saved.append((module, attr, original))
            self._seen.add(t)

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        for mod, attr, original in reversed(self._saved.pop()):
            mod._parameters[attr] = original
            self._scratch.pop()

    def _swap_eager(self) -> list[tuple[torch.nn.Module, str, torch.nn.Parameter]]:
        swapped = []
        for module, held in self._held.items():
            for attr, t in held:
                if t in self._eager:
                    original = module._parameters[attr]
                    assert original is not None
                    out = torch.empty_like(original, memory_format=torch.contiguous_format)
                    module._parameters[attr] = self._perturbed(t, out)  # type: ignore[assignment]
                    swapped.append((module, attr, original))
        return swapped

    def _loss_at(self, batch: EncodedBatch, alpha: float) -> float:
        """L(θ + alpha·z) with θ untouched."""
        self._alpha = alpha
        self._seen = set()
        handles: list[Any] = []
        swapped: list[tuple[torch.nn.Module, str, torch.nn.Parameter]] = []
        pre: Callable[..., None] = self._pre
        try:
            for module in self._held:
                handles.append(module.register_forward_pre_hook(pre))
                handles.append(module.register_forward_hook(self._post, always_call=True))
            swapped = self._swap_eager()
            model = self.bundle.model
            if self.prefix is None or self._eager:  # an eager tensor may be read anywhere
                return self.task.loss(model, batch)
            with self.prefix.active(batch):
                return self.task.loss(model, batch)
        finally:
            for h in handles:
                h.remove()
            for module, attr, original in reversed(swapped):
                module._parameters[attr] = original
            while self._saved:  # only after an exception escaped a forward
                for mod, attr, original in self._saved.pop():
                    mod._parameters[attr] = original
            self._scratch.reset()

    def estimate(self, batch: EncodedBatch, seed: int) -> Estimate:
        model = self.bundle.model
        was_training = model.training
        # eval() sets the flag on every module (~8 ms of a ~37 ms step on SmolLM2):
        # only when one is in training mode.
        toggled = any(m.training for m in model.modules())
        if toggled:
            model.eval()
        self._scratch.allocate()
        self._seed = seed
        self.last_direction = None
        if self.kind == "rademacher":  # gaussian words take 8 bytes per element: regenerate
            sizes = [p.numel() for p in self.bundle.params]
            self.last_direction = PackedDirection.generate(seed, sizes, self.kind)
        try:
            plus = self._loss_at(batch, self.eps)
            missing = set(range(len(self.bundle.params))) - self._seen - self._eager
            if missing:
                self._eager |= missing
                plus = self._loss_at(batch, self.eps)
            minus = self._loss_at(batch, -self.eps)
        finally:
            if toggled:
                model.train(was_training)
        return Estimate((plus - minus) / (2.0 * self.eps), plus, minus)
