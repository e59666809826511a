"""Activation-aware scales (``zo.scale = "act0"``): per-element powers of two from θ₀.

The rms0 rule gives a tensor one scale. That is not enough when the activations
a tensor multiplies differ by an order of magnitude from channel to channel:
SmolLM2's final hidden state has channels whose RMS is 44 times the median
(measured on the demo's probe). A head row's element j moves the loss by its
step times activation j, so one step size for the row is either too large for
the loud channels (diverges) or too small for the quiet ones (does not move).
First-order SGD on the demo's parameters with the rms0 scale stalls the same
way (docs/LEARNING.md), so this is conditioning, not zeroth-order noise.

``activation_scales(bundle, task, bases)`` runs one forward at θ₀ on a fixed
probe (``PROBE_TEXTS`` through the task's own encoding, the same on every node)
and, for every trainable tensor held by a module that multiplies its input
channel by channel, measures each channel's RMS r_j over the positions the loss
reads, and sets

    e_j = clamp(round(log2(R / r_j)), ±MAX_EXPONENT),   R = 1 / sqrt(mean_j r_j⁻²)

(e_j = 0 where r_j is 0 or not finite). The tensor's scale becomes
``ChannelScale(base, 2^e)``: z_t,i is multiplied by s_t · 2^e_i, with e_i the
exponent of the channel element i multiplies. Which tensors:

- a 2-D ``weight`` of shape (out, in) whose module's first input ends in ``in``
  (Linear and anything shaped like it, the classifier's label rows included):
  element (o, j) takes e_j of input channel j;
- a 1-D ``weight`` whose module's output ends in its length (a norm's gain):
  the channel it multiplies is (output − bias) / weight;
- anything else keeps its plain base scale.

Exactness: the exponents are integers, so every node that computes the same
activations to within the rounding of log2 gets the same scale, and the engine
folds a digest of all scales into the model fingerprint that the handshake
compares: a node whose forward rounds differently (another device, another
kernel) is refused by its peers instead of replaying different directions.

It does not know: the data (the probe is fixed text, so a node's private
examples never shape the rule), or modules that mix channels before the weight
reads them in ways the shapes above do not reveal (those get the base scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from seedfl.core.scales import MAX_EXPONENT, ChannelScale, Scale
from seedfl.training.data import Example
from seedfl.training.model import ModelBundle
from seedfl.training.task import EncodedBatch, Task

__all__ = ["PROBE_TEXTS", "activation_scales", "channel_exponents"]

# Plain, varied, mostly neutral English: what a "typical" input looks like to
# the model, without reading any node's data.
PROBE_TEXTS: tuple[str, ...] = (
    "The train left the station a few minutes after noon.",
    "She planted tomatoes along the south side of the garden.",
    "Our meeting moved to Thursday because the room was booked.",
    "He could not find his keys, so he called a locksmith.",
    "The library keeps old maps of the city in the basement.",
    "It rained all weekend and the river rose by a metre.",
    "They painted the kitchen a pale shade of green.",
    "The recipe asks for two eggs, flour, milk and a pinch of salt.",
    "A small dog waited patiently outside the bakery.",
    "The report was long, but the summary fit on one page.",
    "We watched the sunset from the roof of the old hotel.",
    "The bus was late again, and nobody seemed surprised.",
    "Her grandfather repaired clocks for more than forty years.",
    "The new bridge will open to traffic next spring.",
    "I bought a second-hand bicycle with a squeaky brake.",
    "The children built a snowman with a carrot for a nose.",
    "This software update fixes a bug in the printing dialog.",
    "The museum is free on the first Sunday of every month.",
    "He spent the evening reading a novel about sailors.",
    "The soup was too hot, so we let it cool for a while.",
    "Workers repaved the road during the night.",
    "A strong wind knocked several branches onto the path.",
    "The team lost the first game and won the next three.",
    "She writes letters to her pen friend in Portugal.",
    "The phone battery lasts about two days with normal use.",
    "They argued about the plot of the film for an hour.",
    "The concert was loud, crowded and over too quickly.",
    "A thin layer of dust covered the piano.",
    "The committee approved the budget without changes.",
    "My neighbour grows enormous pumpkins every autumn.",
    "The hotel breakfast was cold and the coffee was weak.",
    "What a wonderful, warm and funny afternoon that was.",
)


def channel_exponents(rms: torch.Tensor) -> torch.Tensor:
    """e_j = clamp(round(log2(R / r_j))) as int8, R = 1/sqrt(mean 1/r²) over usable channels."""
    r = rms.detach().to("cpu", torch.float64)
    good = torch.isfinite(r) & (r > 0)
    if not bool(good.any()):
        return torch.zeros(r.numel(), dtype=torch.int8)
    # R = 1 / sqrt(mean 1/r²): then the factors R / r_j have RMS 1 before rounding,
    # so the tensor's step keeps rms0's overall size and only moves between channels.
    big_r = 1.0 / math.sqrt(float((1.0 / r[good]).pow(2).mean()))
    e = torch.zeros(r.numel(), dtype=torch.float64)
    e[good] = torch.round(torch.log2(big_r / r[good]))
    return e.clamp(-MAX_EXPONENT, MAX_EXPONENT).to(torch.int8)


def _read_rows(x: torch.Tensor, enc: EncodedBatch) -> torch.Tensor:
    """The (N, H) activations at the positions the loss reads (all of x when the
    shape does not say which positions these are)."""
    b, t = enc.input_ids.shape
    if x.dim() == 3 and x.shape[0] == b and x.shape[1] == t:
        if enc.rows.numel() == b:  # classification: each row's label position
            at = enc.keep[enc.rows].to(x.device)
            return x[torch.arange(b, device=x.device), at]
        return x[enc.attention_mask.to(x.device).bool()]
    return x.reshape(-1, x.shape[-1])


def _probe(task: Task) -> EncodedBatch:
    label = getattr(task, "labels", None)
    first = label[0] if label else ""
    return task.encode([Example(text=t, label=first, prompt=t, completion=" ok")
                        for t in PROBE_TEXTS])


def activation_scales(bundle: ModelBundle, task: Task, bases: Sequence[float]) -> tuple[Scale, ...]:
    """``bases`` (rms0 of θ₀) with per-element factors where the rule applies."""
    model = bundle.model
    module_of: dict[int, tuple[torch.nn.Module, str]] = {}
    for t, name in enumerate(bundle.names):
        path, _, attr = name.rpartition(".")
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            continue  # not held by a module we can hook: keeps its base scale
        module_of[t] = (module, attr)
    enc = _probe(task)
    seen: dict[int, torch.Tensor] = {}
    handles: list[Any] = []

    def hook_for(t: int, module: torch.nn.Module, attr: str) -> Any:
        weight = getattr(module, attr, None)

        def post(mod: torch.nn.Module, args: Any, output: Any) -> None:
            if t in seen or not isinstance(weight, torch.Tensor):
                return
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if x is not None and not x.is_floating_point():
                x = None  # token ids (an embedding): no activation to scale by
            out = output if isinstance(output, torch.Tensor) else None
            if weight.dim() == 2 and x is not None and x.shape[-1] == weight.shape[1]:
                acts = _read_rows(x.float(), enc)
                seen[t] = channel_exponents(acts.pow(2).mean(0).sqrt()).repeat(weight.shape[0])
            elif weight.dim() == 1 and out is not None and out.shape[-1] == weight.numel():
                bias = getattr(mod, "bias", None)
                y = out.float() - (bias.float() if isinstance(bias, torch.Tensor) else 0.0)
                w = weight.detach().float()
                acts = _read_rows(y, enc) / torch.where(w == 0, torch.ones_like(w), w)
                rms = acts.pow(2).mean(0).sqrt()
                seen[t] = channel_exponents(torch.where(w == 0, torch.zeros_like(rms), rms))
        return post

    for t, (module, attr) in module_of.items():
        handles.append(module.register_forward_hook(hook_for(t, module, attr)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            task.scores(model, enc)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out: list[Scale] = []
    for t, (base, p) in enumerate(zip(bases, bundle.params, strict=True)):
        e = seen.get(t)
        if e is None or e.numel() != p.numel() or not bool(e.any()):
            out.append(base)
        else:
            out.append(ChannelScale(float(base), e))
    return tuple(out)
