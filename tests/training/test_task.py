"""Tasks: verbalizer checks, padding and last positions, losses against direct formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from seedfl.core.config import ModelConfig, TaskConfig
from seedfl.training.data import Example
from seedfl.training.evaluate import evaluate
from seedfl.training.model import ModelBundle, load_model
from seedfl.training.task import ClassificationTask, Task, TaskError

CLS = TaskConfig(template="<{text}>=", verbalizer=(("neg", "n"), ("pos", "y")), max_length=16)


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return load_model(ModelConfig(name="seedfl:tiny"))


def full_logits(bundle: ModelBundle, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return bundle.model(input_ids=torch.tensor([ids])).logits[0].float()


def test_verbalizer_word_must_be_one_token(bundle: ModelBundle) -> None:
    cfg = dataclasses.replace(CLS, verbalizer=(("0", " negative"), ("1", "y")))
    with pytest.raises(TaskError) as err:
        Task.from_config(cfg, bundle.tokenizer)
    msg = str(err.value)
    assert "' negative'" in msg and "label '0'" in msg and "becomes 9 tokens" in msg
    same = dataclasses.replace(CLS, verbalizer=(("0", "y"), ("1", "y")))
    with pytest.raises(TaskError, match="same token"):
        Task.from_config(same, bundle.tokenizer)
    with pytest.raises(TaskError, match=r"task\.template"):
        Task.from_config(dataclasses.replace(CLS, template="{text} {oops}"), bundle.tokenizer)


def test_classification_loss_is_restricted_softmax_at_last_real_position(
    bundle: ModelBundle,
) -> None:
    task = Task.from_config(CLS, bundle.tokenizer)
    assert isinstance(task, ClassificationTask)
    examples = [Example(text="ab", label="pos"), Example(text="hello world", label="neg"),
                Example(text="xyz", label="neg")]
    enc = task.encode(examples)
    # Right padding: row 0 is "<ab>=" (5 tokens) then padding.
    assert enc.attention_mask[0].tolist()[:6] == [1, 1, 1, 1, 1, 0]
    assert enc.input_ids[0, :5].tolist() == list(b"<ab>=")
    y, n = ord("y"), ord("n")
    losses, correct = [], 0
    for e in examples:
        ids = list(f"<{e.text}>=".encode())
        pair = full_logits(bundle, ids)[-1, [n, y]]
        target = 1 if e.label == "pos" else 0
        losses.append(float(F.cross_entropy(pair[None], torch.tensor([target]))))
        correct += int(int(pair.argmax()) == target)
    assert task.loss(bundle.model, enc) == pytest.approx(sum(losses) / 3, rel=1e-5)
    scores = task.scores(bundle.model, enc)
    assert scores.correct == correct and scores.units == scores.examples == 3
    result = evaluate(bundle, task, examples, batch_size=2)
    assert result.n == 3 and result.accuracy == pytest.approx(correct / 3)
    assert result.loss == pytest.approx(sum(losses) / 3, rel=1e-5)


def test_classification_truncates_from_the_left(bundle: ModelBundle) -> None:
    task = Task.from_config(dataclasses.replace(CLS, max_length=6), bundle.tokenizer)
    enc = task.encode([Example(text="abcdefgh", label="pos")])
    assert enc.input_ids[0].tolist() == list(b"efgh>=")


def test_causal_lm_is_token_mean_over_real_tokens(bundle: ModelBundle) -> None:
    cfg = dataclasses.replace(CLS, type="causal_lm", max_length=8)
    task = Task.from_config(cfg, bundle.tokenizer)
    texts = ["hello world", "hi"]
    enc = task.encode([Example(text=t) for t in texts])
    assert enc.input_ids.shape == (2, 8)  # "hello world" truncated to 8 tokens
    total, count = 0.0, 0
    for t in texts:
        ids = list(t.encode())[:8]
        logits = full_logits(bundle, ids)
        total += float(F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum"))
        count += len(ids) - 1
    assert task.loss(bundle.model, enc) == pytest.approx(total / count, rel=1e-5)
    assert evaluate(bundle, task, [Example(text=t) for t in texts]).accuracy is None


def test_completion_loss_covers_completion_and_eos_only(bundle: ModelBundle) -> None:
    cfg = dataclasses.replace(CLS, type="completion", max_length=32)
    task = Task.from_config(cfg, bundle.tokenizer)
    eos = bundle.tokenizer.eos_token_id
    examples = [Example(prompt="2+2=", completion="4"),
                Example(prompt="Q: hi\nA:", completion=" yo")]
    enc = task.encode(examples)
    total, count = 0.0, 0
    for e in examples:
        prompt, tail = list(e.prompt.encode()), [*e.completion.encode(), eos]
        ids = prompt + tail
        logits = full_logits(bundle, ids)[len(prompt) - 1 : -1]
        total += float(F.cross_entropy(logits, torch.tensor(tail), reduction="sum"))
        count += len(tail)
    scores = task.scores(bundle.model, enc)
    assert scores.units == count == 6
    assert scores.loss_sum / scores.units == pytest.approx(total / count, rel=1e-5)
    # Prompt positions carry no target.
    assert int((enc.targets != -100).sum()) == count
    assert math.isfinite(task.loss(bundle.model, enc))


def test_loss_tensor_backpropagates_and_matches_loss() -> None:
    fresh = load_model(ModelConfig(name="seedfl:tiny"))
    task = Task.from_config(CLS, fresh.tokenizer)
    enc = task.encode([Example(text="ab", label="pos"), Example(text="cd", label="neg")])
    weight = fresh.model.model.norm.weight
    weight.requires_grad_(True)
    loss = task.loss_tensor(fresh.model, enc)
    loss.backward()
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0
    assert float(loss.detach()) == pytest.approx(task.loss(fresh.model, enc), rel=1e-6)


def test_token_memo_gives_the_tokenizers_ids_and_stays_bounded(
        bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    import seedfl.training.task as task_mod

    task = Task.from_config(CLS, bundle.tokenizer)
    fresh = Task.from_config(CLS, bundle.tokenizer)
    examples = [Example(text=t, label="pos" if i % 2 else "neg")
                for i, t in enumerate(["ab", "cd", "ab", "efg"])]
    first = task.encode(examples)
    again = task.encode(examples)  # from the memo this time
    calls: list[int] = []
    real = task_mod._ids
    monkeypatch.setattr(task_mod, "_ids",
                        lambda tok, texts, special: calls.append(len(texts)) or real(
                            tok, texts, special))
    memo_hit = task.encode(examples)
    assert calls == []  # nothing re-tokenized
    monkeypatch.setattr(task_mod, "TOKEN_MEMO", 2)
    bounded = task.encode([*examples, Example(text="hij", label="neg")])
    assert len(task._memo) == 4  # started over with this batch alone, not 5 texts
    reference = fresh.encode([*examples, Example(text="hij", label="neg")])
    for enc in (again, memo_hit):
        assert torch.equal(enc.input_ids, first.input_ids)
        assert torch.equal(enc.attention_mask, first.attention_mask)
    assert torch.equal(bounded.input_ids, reference.input_ids)
