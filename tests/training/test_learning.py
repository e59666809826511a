"""The tiny random LM learns a synthetic classification task from ZO updates alone.

The loop is the protocol's own, written out: seq = 0, 1, 2, ...;
seed = update_seed(swarm_key, origin, seq); g from the estimator; one code byte
from the codec; θ ← θ − η · decode(code) · z(seed).

Task (chosen to be learnable in a few hundred ZO steps by a 2-layer random
Llama): a text of 4–8 letters drawn from "abcdef" is label 1 (word "y"), one
drawn from "ghijkl" is label 0 (word "n"), read at the "=" after the text. All
28,832 trainable parameters are perturbed (trainable = "*"); at init the model
is at chance. ε = 1e-3, η = 2e-3, batch 16, default codec configs. Measured
(200 steps, 128 held-out): log8 0.49 → 1.00 accuracy, loss 0.70 → 0.04; lin8
loss 0.70 → 0.26; sign1 0.70 → 0.23 (both clip most g at c = 1).
"""

from __future__ import annotations

import random

import pytest

from seedfl.core.codecs import CodecConfig, make_codec
from seedfl.core.config import ModelConfig, TaskConfig
from seedfl.core.rule import apply_update_
from seedfl.core.seeds import update_seed
from seedfl.training.data import Example, batches, split_holdout
from seedfl.training.estimator import Estimator
from seedfl.training.evaluate import EvalResult, evaluate
from seedfl.training.model import load_model
from seedfl.training.task import Task

TASK = TaskConfig(template="{text}=", verbalizer=(("0", "n"), ("1", "y")), max_length=16)
KEY, ORIGIN = bytes(range(16)), bytes(range(16, 32))
EPS, LR, BATCH = 1e-3, 2e-3, 16


def synthetic(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        letters = "abcdef" if label else "ghijkl"
        text = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
        out.append(Example(text=text, label=str(label)))
    return out


def train(codec_name: str, steps: int) -> tuple[EvalResult, EvalResult, int]:
    bundle = load_model(ModelConfig(name="seedfl:tiny"))
    task = Task.from_config(TASK, bundle.tokenizer)
    codec = make_codec(CodecConfig(name=codec_name))
    estimator = Estimator(bundle, task, EPS)
    train_set, held_out = split_holdout(synthetic(384, seed=0), 1 / 3, seed=0)
    before = evaluate(bundle, task, held_out, batch_size=64)
    stream = batches(train_set, ORIGIN, BATCH)
    clipped = 0
    for seq in range(steps):
        seed = update_seed(KEY, ORIGIN, seq)
        g = estimator.estimate(task.encode(next(stream)), seed).g
        code, clip = codec.encode(g, seed)
        clipped += clip
        apply_update_(bundle.params, seed, -LR * codec.decode(code), "rademacher")
    return before, evaluate(bundle, task, held_out, batch_size=64), clipped


def test_log8_learns_from_chance_to_ninety_percent() -> None:
    before, after, clipped = train("log8", steps=200)
    assert before.n == after.n == 128
    assert before.accuracy is not None and 0.35 <= before.accuracy <= 0.65
    assert after.accuracy is not None and after.accuracy >= 0.9
    assert after.loss < 0.5 * before.loss
    assert clipped == 0  # the default log8 range covers this task's g


@pytest.mark.parametrize("codec_name", ["lin8", "sign1"])
def test_lin8_and_sign1_lower_the_loss(codec_name: str) -> None:
    before, after, _ = train(codec_name, steps=200)
    assert after.loss < 0.7 * before.loss
    assert after.accuracy is not None and after.accuracy > before.accuracy  # type: ignore[operator]
