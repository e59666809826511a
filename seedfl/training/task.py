"""What the model is trained to do: examples to tensors, tensors to a loss.

Three task types (DESIGN §10):
- ``causal_lm``: mean next-token cross-entropy over the text, truncated to max_length.
- ``completion``: prompt + completion (+ EOS); the loss covers the completion only.
- ``classification`` (MeZO-style): the prompt is ``template.format(text=...)``; each
  label has one verbalizer word that must be exactly one token; the loss is the
  cross-entropy of a softmax restricted to the label words' logits at the last
  prompt position, and the prediction is their argmax.

Batches are right-padded with an attention mask, so positions need no shifting and
the last real position of row b is ``mask[b].sum() - 1``. Logits are computed only
at the positions the loss reads when the model accepts ``logits_to_keep``.
Losses are float32 means: over tokens for the LM tasks, over examples for
classification.

This module knows nothing of perturbations, seeds or where the batch came from.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seedfl.core.config import TaskConfig
from seedfl.core.errors import UserError
from seedfl.training.data import Example
from seedfl.training.label_rows import LABEL_ROWS_ATTR

_IGNORE = -100


class TaskError(UserError, ValueError):
    """A task that cannot run with this tokenizer; the message says what to change."""


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: torch.Tensor  # (B, T) int64, right-padded
    attention_mask: torch.Tensor  # (B, T) int64
    keep: torch.Tensor  # (K,) positions whose logits the loss reads, ascending
    targets: torch.Tensor  # LM: (B, K) next token or -100; classification: (B,) class
    rows: torch.Tensor  # classification: (B,) index into keep of each row's last position

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class Scores:
    loss_sum: float  # summed over loss units (tokens, or examples for classification)
    units: int
    correct: int | None  # classification only
    examples: int


TOKEN_MEMO = 1 << 16


def _ids(tokenizer: Any, texts: list[str], special: bool) -> list[list[int]]:
    return [list(x) for x in tokenizer(texts, add_special_tokens=special)["input_ids"]]


def _keep_tail(ids: list[int], limit: int, bos: int | None) -> list[int]:
    """The last ``limit`` tokens, keeping a leading BOS (the end of a prompt matters)."""
    if len(ids) <= limit:
        return ids
    if bos is not None and ids and ids[0] == bos:
        return [bos, *ids[len(ids) - limit + 1 :]]
    return ids[len(ids) - limit :]


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    unwrap = getattr(model, "get_base_model", None)  # peft wrappers pass it through
    base = unwrap() if callable(unwrap) else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _device(model: torch.nn.Module) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


class Task:
    """Base: padding, the forward pass restricted to ``keep``, loss and scores."""

    def __init__(self, cfg: TaskConfig, tokenizer: Any) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.max_length = cfg.max_length
        self.bos: int | None = getattr(tokenizer, "bos_token_id", None)
        self.eos: int | None = getattr(tokenizer, "eos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad: int = pad if pad is not None else (self.eos if self.eos is not None else 0)
        self._slices: dict[int, bool] = {}  # id(model) -> accepts logits_to_keep
        # A training shard is encoded again on every pass over it: tokenizing a
        # batch of 64 short texts cost ~5 ms of a ~37 ms ZO step (SmolLM2, cached
        # prefix, 2 cores). The tokenizer is a pure function of the text, so its
        # ids are memoised, up to TOKEN_MEMO texts (then the memo starts over).
        self._memo: dict[tuple[str, bool], tuple[int, ...]] = {}

    def _ids(self, texts: list[str], special: bool) -> list[list[int]]:
        """Token ids of each text, through the memo."""
        missing = list(dict.fromkeys(t for t in texts if (t, special) not in self._memo))
        if missing:
            if len(self._memo) + len(missing) > TOKEN_MEMO:
                self._memo.clear()
                missing = list(dict.fromkeys(texts))
            for text, ids in zip(missing, _ids(self.tokenizer, missing, special), strict=True):
                self._memo[(text, special)] = tuple(ids)
        return [list(self._memo[(t, special)]) for t in texts]

    @staticmethod
    def from_config(cfg: TaskConfig, tokenizer: Any) -> Task:
        kinds: dict[str, type[Task]] = {
            "causal_lm": CausalLMTask,
            "completion": CompletionTask,
            "classification": ClassificationTask,
        }
        if cfg.type not in kinds:
            raise TaskError(f"task.type: {cfg.type!r} is not one of {', '.join(kinds)}")
        return kinds[cfg.type](cfg, tokenizer)

    def encode(self, examples: Sequence[Example]) -> EncodedBatch:
        raise NotImplementedError

    def _pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[b, : len(s)] = 1
        return ids, mask

    def _logits(self, model: torch.nn.Module, enc: EncodedBatch) -> torch.Tensor:
        """float32 logits at ``enc.keep``: (B, K, V)."""
        logits = self._forward(model, enc)
        if logits.shape[1] != enc.keep.numel():
            logits = logits[:, enc.keep.to(logits.device)]
        return logits.float()

    def _forward(self, model: torch.nn.Module, enc: EncodedBatch) -> torch.Tensor:
        """The model's logits, at ``enc.keep`` only where it accepts ``logits_to_keep``."""
        device = _device(model)
        keep = enc.keep.to(device)
        kwargs: dict[str, Any] = {}
        if id(model) not in self._slices:
            self._slices[id(model)] = _accepts_logits_to_keep(model)
        if self._slices[id(model)]:
            kwargs["logits_to_keep"] = keep
        out = model(
            input_ids=enc.input_ids.to(device),
            attention_mask=enc.attention_mask.to(device),
            use_cache=False,
            **kwargs,
        )
        logits: torch.Tensor = out.logits
        return logits

    def _terms(self, logits: torch.Tensor,
               enc: EncodedBatch) -> tuple[torch.Tensor, int, int | None]:
        """(summed loss, loss units, correct predictions or None)."""
        targets = enc.targets.to(logits.device)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
            ignore_index=_IGNORE, reduction="sum",
        )
        return loss, int((targets != _IGNORE).sum()), None

    def scores(self, model: torch.nn.Module, enc: EncodedBatch) -> Scores:
        with torch.inference_mode():
            loss, units, correct = self._terms(self._logits(model, enc), enc)
            return Scores(float(loss), units, correct, enc.size)

    def loss_tensor(self, model: torch.nn.Module, enc: EncodedBatch) -> torch.Tensor:
        """The mean loss as a tensor under the caller's grad mode (backprop baselines)."""
        loss, units, _ = self._terms(self._logits(model, enc), enc)
        return loss / max(units, 1)

    def loss(self, model: torch.nn.Module, enc: EncodedBatch) -> float:
        """Mean loss of the batch under the model as it is now (no grad)."""
        s = self.scores(model, enc)
        return s.loss_sum / max(s.units, 1)

    def _lm_batch(self, seqs: list[list[int]], first_target: list[int]) -> EncodedBatch:
        """Next-token targets for positions i >= first_target[b] - 1 of each row."""
        ids, mask = self._pad(seqs)
        width = ids.shape[1]
        lo = max(0, min(first_target) - 1)
        keep = torch.arange(lo, max(lo + 1, width - 1))
        nxt = (keep + 1).clamp(max=width - 1)
        lengths = mask.sum(dim=1, keepdim=True)
        starts = torch.tensor(first_target, dtype=torch.long).unsqueeze(1)
        valid = (nxt.unsqueeze(0) < lengths) & (nxt.unsqueeze(0) >= starts) & (keep + 1 < width)
        targets = torch.where(valid, ids[:, nxt], torch.full_like(ids[:, nxt], _IGNORE))
        return EncodedBatch(ids, mask, keep, targets, torch.empty(0, dtype=torch.long))


class CausalLMTask(Task):
    def encode(self, examples: Sequence[Example]) -> EncodedBatch:
        texts = [e.text for e in examples]
        seqs = [s[: self.max_length] for s in self._ids(texts, True)]
        return self._lm_batch(seqs, [1] * len(seqs))


class CompletionTask(Task):
    def encode(self, examples: Sequence[Example]) -> EncodedBatch:
        prompts = self._ids([e.prompt for e in examples], True)
        tails = self._ids([e.completion for e in examples], False)
        seqs: list[list[int]] = []
        starts: list[int] = []
        for p, c in zip(prompts, tails, strict=True):
            c = ([*c, self.eos] if self.eos is not None else c)[: self.max_length - 1]
            p = _keep_tail(p, self.max_length - len(c), self.bos)
            seqs.append(p + c)
            starts.append(max(1, len(p)))
        return self._lm_batch(seqs, starts)


class ClassificationTask(Task):
    def __init__(self, cfg: TaskConfig, tokenizer: Any) -> None:
        super().__init__(cfg, tokenizer)
        try:
            cfg.template.format(text="")
        except (KeyError, IndexError, ValueError) as exc:
            raise TaskError(
                f"task.template: {cfg.template!r} cannot be filled ({exc!r}); it may use only "
                "{text}; write other braces as {{ and }}"
            ) from None
        self.labels = [label for label, _ in cfg.verbalizer]
        ids: list[int] = []
        for label, word in cfg.verbalizer:
            toks = _ids(tokenizer, [word], False)[0]
            if len(toks) != 1:
                pieces = tokenizer.convert_ids_to_tokens(toks) if toks else []
                raise TaskError(
                    f"task.verbalizer: the word {word!r} of label {label!r} becomes {len(toks)} "
                    f"tokens {pieces} under this tokenizer; each label word must be exactly one "
                    "token: pick a more common word, or try it with a leading space"
                )
            ids.append(toks[0])
        if len(set(ids)) != len(ids):
            raise TaskError("task.verbalizer: two labels map to the same token; use distinct words")
        self.class_ids = torch.tensor(ids, dtype=torch.long)
        self._index = {label: i for i, label in enumerate(self.labels)}

    def encode(self, examples: Sequence[Example]) -> EncodedBatch:
        prompts = [self.cfg.template.format(text=e.text) for e in examples]
        # An empty prompt still needs one position to read the label logits at.
        filler = [self.bos if self.bos is not None else self.pad]
        seqs = [_keep_tail(s, self.max_length, self.bos) or filler
                for s in self._ids(prompts, True)]
        ids, mask = self._pad(seqs)
        last = mask.sum(dim=1) - 1
        keep, rows = torch.unique(last, sorted=True, return_inverse=True)
        targets = torch.tensor([self._index[e.label] for e in examples], dtype=torch.long)
        return EncodedBatch(ids, mask, keep, targets, rows)

    def _logits(self, model: torch.nn.Module, enc: EncodedBatch) -> torch.Tensor:
        """float32 logits of the label words at each row's last position: (B, C).

        The output head computes only the label rows at those positions (the
        vocabulary is ~50 k rows; a classifier reads C of them at B positions).
        """
        head = _output_head(model)
        if head is None:
            full = super()._logits(model, enc)  # (B, K, V)
            picked = full[torch.arange(enc.size, device=full.device), enc.rows.to(full.device)]
            return picked[:, self.class_ids.to(full.device)]
        rows_module = _label_rows_module(model)
        if getattr(rows_module, "token_ids", None) != tuple(self.class_ids.tolist()):
            rows_module = None  # rows of other words (another verbalizer): use the head
        keep, rows = enc.keep, enc.rows

        def sliced(hidden: torch.Tensor) -> torch.Tensor:
            at = rows.to(hidden.device)
            if hidden.shape[1] != keep.numel():  # the model ignored logits_to_keep
                at = keep.to(hidden.device)[at]
            picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), at]
            if rows_module is not None:
                out: torch.Tensor = rows_module(picked)
            else:
                ids = self.class_ids.to(hidden.device)
                bias = head.bias[ids] if getattr(head, "bias", None) is not None else None
                out = F.linear(picked, head.weight[ids], bias)
            return out.unsqueeze(1)  # (B, 1, C): what follows the head is elementwise

        own = head.__dict__.get("forward")  # accelerate may have wrapped it: restore that
        head.forward = sliced
        try:
            logits = self._forward(model, enc)
        finally:
            if own is None:
                del head.forward
            else:
                head.forward = own
        return logits[:, 0, :].float()

    def _terms(self, logits: torch.Tensor,
               enc: EncodedBatch) -> tuple[torch.Tensor, int, int | None]:
        targets = enc.targets.to(logits.device)
        loss = F.cross_entropy(logits, targets, reduction="sum")
        correct = int((logits.argmax(dim=1) == targets).sum())
        return loss, enc.size, correct


def _base(model: torch.nn.Module) -> Any:
    unwrap = getattr(model, "get_base_model", None)  # peft wrappers
    return unwrap() if callable(unwrap) else model


def _output_head(model: torch.nn.Module) -> Any:
    """The output head when it is a plain (V, H) linear map we can slice, else None."""
    getter = getattr(_base(model), "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    weight = getattr(head, "weight", None)
    if not isinstance(head, torch.nn.Linear) or not isinstance(weight, torch.Tensor):
        return None
    return head


def _label_rows_module(model: torch.nn.Module) -> torch.nn.Module | None:
    rows = getattr(_base(model), LABEL_ROWS_ATTR, None)
    return rows if isinstance(rows, torch.nn.Module) else None
