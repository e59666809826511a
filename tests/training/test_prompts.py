"""Zero-shot prompt comparison: each prompt scored like ``evaluate`` would, best first."""

from __future__ import annotations

import pytest

from seedfl.core.config import ModelConfig, TaskConfig
from seedfl.training.data import Example
from seedfl.training.evaluate import evaluate
from seedfl.training.model import load_model
from seedfl.training.prompts import Prompt, compare_prompts, parse_verbalizer
from seedfl.training.task import Task, TaskError

BASE = TaskConfig(template="{text}=", verbalizer=(("0", "x"), ("1", "y")), max_length=16)
EXAMPLES = [Example(text=f"w{i}" * (1 + i % 3), label=str(i % 2)) for i in range(20)]


def test_compare_prompts_ranks_by_accuracy_and_matches_evaluate() -> None:
    bundle = load_model(ModelConfig(name="seedfl:tiny"))
    prompts = [Prompt("{text}=", BASE.verbalizer), Prompt("<{text}>", (("0", "a"), ("1", "b"))),
               Prompt("Q {text} A", (("0", "n"), ("1", "p")))]
    ranked = compare_prompts(bundle, BASE, prompts, EXAMPLES, batch_size=7)
    assert {s.prompt for s in ranked} == set(prompts)
    accs = [s.accuracy for s in ranked]
    assert accs == sorted(accs, reverse=True)
    for s in ranked:
        direct = evaluate(bundle, Task.from_config(s.prompt.task_config(BASE), bundle.tokenizer),
                          EXAMPLES, 5)
        assert s.accuracy == direct.accuracy
        assert s.result.loss == pytest.approx(direct.loss, rel=1e-5)


def test_parse_verbalizer_orders_by_config_labels_and_rejects_mismatch() -> None:
    assert parse_verbalizer('{"1": " good", "0": " bad"}', ["0", "1"]) == (
        ("0", " bad"), ("1", " good"))
    with pytest.raises(TaskError, match="labels"):
        parse_verbalizer('{"0": "a"}', ["0", "1"])
    with pytest.raises(TaskError, match="JSON"):
        parse_verbalizer("0=a", ["0", "1"])
