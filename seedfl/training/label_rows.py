"""Label rows: the output head's rows of a classifier's label words, as their own tensor.

A classification task reads C rows of the output head (one per label word). In
most small LMs that head is tied to the input embeddings, a (V, H) tensor of
tens of millions of numbers: selecting it for training would perturb all of
them (and the embeddings with them) to move C·H that matter. So a
classification bundle carries ``LabelRows``, a (C, H) copy of those rows
(plus their bias, if the head has one), attached to the model as
``seedfl_label_rows``; the task computes its label logits through it, and
``model.trainable`` may select ``seedfl_label_rows.weight`` like any tensor.
Until it trains, it equals the head's rows, so the model's outputs are unchanged.

On export, ``fold_label_rows`` writes the rows back into the head of a copy of
the model, untying the head from the embeddings first when they were tied (so the
input embeddings keep their original rows): plain transformers then computes
exactly the logits the task did.

This module knows nothing of perturbations, tasks' templates or the swarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["LABEL_ROWS_ATTR", "LABEL_ROWS_NAME", "LabelRows", "attach_label_rows",
           "fold_label_rows"]

LABEL_ROWS_ATTR = "seedfl_label_rows"
LABEL_ROWS_NAME = f"{LABEL_ROWS_ATTR}.weight"


class LabelRows(torch.nn.Module):
    """``x @ W[label ids].T (+ b[label ids])`` with its own copy of the rows."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None,
                 token_ids: Sequence[int]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = (None if bias is None
                     else torch.nn.Parameter(bias.detach().clone(), requires_grad=False))
        self.token_ids = tuple(int(t) for t in token_ids)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)


def _head(model: Any) -> torch.nn.Linear | None:
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, torch.nn.Linear) else None


def attach_label_rows(model: Any, token_ids: Sequence[int]) -> LabelRows | None:
    """Attach a copy of the head's rows for ``token_ids``; None if the head is not linear."""
    head = _head(model)
    if head is None:
        return None
    ids = torch.tensor(list(token_ids), dtype=torch.long, device=head.weight.device)
    with torch.no_grad():
        bias = head.bias[ids] if head.bias is not None else None
        rows = LabelRows(head.weight[ids], bias, token_ids)
    setattr(model, LABEL_ROWS_ATTR, rows)
    return rows


def fold_label_rows(model: Any) -> bool:
    """Write the label rows into the head of ``model`` (a copy: this unties it) and
    detach the module; returns whether there was anything to fold."""
    rows = getattr(model, LABEL_ROWS_ATTR, None)
    if not isinstance(rows, LabelRows):
        return False
    delattr(model, LABEL_ROWS_ATTR)
    head = _head(model)
    assert head is not None, "label rows exist only for a linear head"
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        if head.weight is getattr(embeddings, "weight", None):
            head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
            model.config.tie_word_embeddings = False
            if hasattr(model, "all_tied_weights_keys"):
                model.all_tied_weights_keys = {}
        ids = torch.tensor(rows.token_ids, dtype=torch.long, device=head.weight.device)
        head.weight[ids] = rows.weight.to(head.weight.dtype)
        if rows.bias is not None and head.bias is not None:
            head.bias[ids] = rows.bias.to(head.bias.dtype)
    return True
