"""Zero-shot baselines: the same model under several prompt templates.

A finetune is worth having only if it beats the best prompt a user could have
written for the untouched model. ``compare_prompts`` scores each (template,
verbalizer) pair on the same held-out examples with the same model and length
limit and returns them best first; the demo trains the best one and reports
all of them, ``seedfl eval --template ...`` prints them.

Every template must be a classification template (``{text}`` and nothing
else in braces) and every verbalizer maps the config's labels to one-token
words; ``Task`` checks both and says what to change.

This module knows nothing of training or the swarm.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from seedfl.core.config import TaskConfig
from seedfl.training.data import Example
from seedfl.training.evaluate import EvalResult, evaluate
from seedfl.training.model import ModelBundle
from seedfl.training.task import Task, TaskError

__all__ = ["Prompt", "PromptScore", "compare_prompts", "parse_verbalizer"]


@dataclass(frozen=True)
class Prompt:
    template: str
    verbalizer: tuple[tuple[str, str], ...]  # (label, word) in the config's label order

    def task_config(self, base: TaskConfig) -> TaskConfig:
        return dataclasses.replace(base, type="classification", template=self.template,
                                   verbalizer=self.verbalizer)


@dataclass(frozen=True)
class PromptScore:
    prompt: Prompt
    result: EvalResult

    @property
    def accuracy(self) -> float:
        assert self.result.accuracy is not None
        return self.result.accuracy


def parse_verbalizer(text: str, labels: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """A verbalizer from JSON: ``{"label": "word", ...}`` covering exactly ``labels``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskError(f"verbalizer {text!r} is not JSON ({exc.msg}); write it like "
                        '{"0": " negative", "1": " positive"}') from None
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise TaskError(f"verbalizer {text!r}: give a JSON object of label -> word")
    words = {str(k): v for k, v in raw.items()}
    if set(words) != set(labels):
        raise TaskError(f"verbalizer {text!r} names labels {sorted(words)}; "
                        f"the config's labels are {sorted(labels)}")
    return tuple((label, words[label]) for label in labels)


def compare_prompts(bundle: ModelBundle, base: TaskConfig, prompts: Sequence[Prompt],
                    examples: Sequence[Example], batch_size: int = 32) -> list[PromptScore]:
    """Accuracy of each prompt on ``examples`` under the bundle's model, best first.

    Ties keep the given order, so the first listed of equally good prompts wins.
    """
    scores = []
    for prompt in prompts:
        task = Task.from_config(prompt.task_config(base), bundle.tokenizer)
        scores.append(PromptScore(prompt, evaluate(bundle, task, examples, batch_size)))
    return sorted(scores, key=lambda s: -s.accuracy)
