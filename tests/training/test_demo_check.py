"""The demo's independent plain-transformers scorer agrees with seedfl's evaluate.

Texts longer than max_length exercise truncation, mixed lengths exercise
padding: both paths must score exactly the same prompt tokens.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from seedfl.core.config import parse_config
from seedfl.demo.check import plain_transformers_accuracy
from seedfl.training.data import load_examples
from seedfl.training.evaluate import evaluate
from seedfl.training.export import export_model
from seedfl.training.model import load_swarm_model
from seedfl.training.task import Task

CONFIG = """\
[model]
name = "seedfl:tiny"
[task]
type = "classification"
template = "{text} ="
verbalizer = { "0" = "x", "1" = "y" }
max_length = 12
"""


def test_plain_transformers_accuracy_matches_seedfl_evaluate(tmp_path: Path) -> None:
    cfg_path = tmp_path / "swarm.toml"
    cfg_path.write_text(CONFIG)
    cfg = parse_config(CONFIG)
    rng = random.Random(5)
    rows = [{"text": "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(1, 30))),
             "label": str(rng.randint(0, 1))} for _ in range(60)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    bundle = load_swarm_model(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a random model that does not answer one word always
        for p in bundle.params:
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    bundle.sync_to_model()
    task = Task.from_config(cfg.task, bundle.tokenizer)
    ours = evaluate(bundle, task, load_examples(data, cfg.task), 7)
    out = export_model(bundle, tmp_path / "export")

    theirs = plain_transformers_accuracy(out, data, cfg_path, limit=60, batch_size=9)
    assert ours.accuracy is not None and 0.2 < ours.accuracy < 0.8
    assert theirs == ours.accuracy
    assert plain_transformers_accuracy(out, data, cfg_path, limit=10, batch_size=1) == (
        evaluate(bundle, task, load_examples(data, cfg.task)[:10], 3).accuracy)
