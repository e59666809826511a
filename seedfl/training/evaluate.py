"""Held-out evaluation: the task's loss (and accuracy) over a list of examples.

``evaluate(bundle, task, examples, batch_size)`` runs the model as it is now, in
eval mode and without gradients, over the examples in file order, and returns the
mean loss over the task's loss units (tokens for the LM tasks, examples for
classification) and, for classification, the accuracy of the argmax over the label
words. It never changes a weight. With ``prefix`` (a ``FrozenPrefix`` of this model) the
frozen layers' output is cached across calls, so repeated evaluations of the same
held-out set (learning curves) run only the trainable layers.

This module knows nothing of perturbations, updates or the swarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seedfl.training.data import DataError, Example
from seedfl.training.model import ModelBundle
from seedfl.training.prefix import FrozenPrefix
from seedfl.training.task import Task


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float | None  # classification only
    n: int  # examples evaluated

    def to_dict(self) -> dict[str, float | int | None]:
        return {"loss": self.loss, "accuracy": self.accuracy, "n": self.n}


def evaluate(
    bundle: ModelBundle, task: Task, examples: Sequence[Example], batch_size: int = 16,
    prefix: FrozenPrefix | None = None,
) -> EvalResult:
    """Mean loss (and accuracy) of the bundle's model on ``examples``."""
    if not examples:
        raise DataError("no examples to evaluate on; give a data file with at least one")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    model = bundle.model
    was_training = model.training
    model.eval()
    loss_sum, units, correct = 0.0, 0, 0
    classifies = False
    try:
        for start in range(0, len(examples), batch_size):
            enc = task.encode(examples[start : start + batch_size])
            if prefix is None:
                scores = task.scores(model, enc)
            else:
                with prefix.active(enc):
                    scores = task.scores(model, enc)
            loss_sum += scores.loss_sum
            units += scores.units
            if scores.correct is not None:
                classifies = True
                correct += scores.correct
    finally:
        model.train(was_training)
    accuracy = correct / len(examples) if classifies else None
    return EvalResult(loss_sum / max(units, 1), accuracy, len(examples))
