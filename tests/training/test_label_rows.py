"""Head slicing and label rows: the classifier computes C rows of the head, not V.

The sliced loss must equal the full-vocabulary loss; trained label rows must
survive export so plain transformers computes the same logits; the running
model must keep its tied head.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seedfl.core.config import ModelConfig, TaskConfig
from seedfl.training.data import Example
from seedfl.training.estimator import Estimator
from seedfl.training.export import export_model
from seedfl.training.label_rows import LABEL_ROWS_ATTR, LABEL_ROWS_NAME
from seedfl.training.model import ModelBundle, label_words, load_model
from seedfl.training.task import ClassificationTask, EncodedBatch, Task

CLS = TaskConfig(template="<{text}>=", verbalizer=(("neg", "n"), ("pos", "y")), max_length=24)
EXAMPLES = [Example(text="ab" * (i % 5 + 1) + "xyz"[i % 3], label=("neg", "pos")[i % 2])
            for i in range(12)]


def _bundle(*trainable: str) -> ModelBundle:
    cfg = ModelConfig(name="seedfl:tiny", trainable=trainable)
    return load_model(cfg, label_words=label_words(CLS))


def _full_vocab_loss(task: ClassificationTask, bundle: ModelBundle, enc: EncodedBatch) -> float:
    """Reference: every logit of the vocabulary at every position, then pick."""
    with torch.inference_mode():
        logits = bundle.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    last = enc.attention_mask.sum(dim=1) - 1
    picked = logits[torch.arange(enc.size), last][:, task.class_ids].float()
    return float(F.cross_entropy(picked, enc.targets))


@pytest.mark.parametrize("trainable", [
    ("model.norm.weight",),
    ("model.layers.1.*", "model.norm.weight"),
    ("lm_head.weight",),  # tied with the embeddings: no label rows
])
def test_sliced_head_loss_equals_full_vocabulary_loss(trainable: tuple[str, ...]) -> None:
    bundle = _bundle(*trainable)
    task = Task.from_config(CLS, bundle.tokenizer)
    assert isinstance(task, ClassificationTask)
    enc = task.encode(EXAMPLES)
    assert enc.keep.numel() > 1  # rows end at different positions
    assert task.loss(bundle.model, enc) == pytest.approx(
        _full_vocab_loss(task, bundle, enc), rel=1e-5, abs=1e-6)


def test_label_rows_exist_only_when_selected() -> None:
    plain = _bundle("model.norm.weight")
    assert not hasattr(plain.model, LABEL_ROWS_ATTR)
    rows = _bundle("model.norm.weight", LABEL_ROWS_NAME)
    assert rows.names == ["model.norm.weight", LABEL_ROWS_NAME]
    head = rows.model.lm_head.weight
    ids = Task.from_config(CLS, rows.tokenizer).class_ids  # type: ignore[attr-defined]
    assert torch.equal(rows.params[1], head[ids])
    assert rows.params[1].data_ptr() != head.data_ptr()


def test_trained_label_rows_change_only_the_label_logits_and_export_exactly(
        tmp_path: Path) -> None:
    bundle = _bundle("model.norm.weight", LABEL_ROWS_NAME)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    before = task.loss(bundle.model, enc)
    embeddings = bundle.model.model.embed_tokens.weight.detach().clone()
    with torch.no_grad():
        bundle.params[1].add_(torch.randn(bundle.params[1].shape,
                                          generator=torch.Generator().manual_seed(3)))
    after = task.loss(bundle.model, enc)
    assert abs(after - before) > 1e-3
    out = export_model(bundle, tmp_path / "export")
    # The running model is untouched: still tied, rows still separate.
    assert bundle.model.lm_head.weight is bundle.model.model.embed_tokens.weight
    assert hasattr(bundle.model, LABEL_ROWS_ATTR)
    assert torch.equal(bundle.model.model.embed_tokens.weight, embeddings)
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not plain.config.tie_word_embeddings
    assert torch.equal(plain.model.embed_tokens.weight, embeddings)
    assert torch.equal(plain.lm_head.weight[task.class_ids], bundle.params[1])  # type: ignore[attr-defined]
    plain_task = Task.from_config(CLS, bundle.tokenizer)
    assert plain_task.loss(plain, enc) == pytest.approx(after, rel=1e-6)


def test_estimator_on_label_rows_leaves_weights_bit_identical() -> None:
    bundle = _bundle("model.norm.weight", LABEL_ROWS_NAME)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES[:6])
    snapshot = [p.clone() for p in bundle.params]
    est = Estimator(bundle, task, eps=1e-2).estimate(enc, seed=7)
    assert est.loss_plus != est.loss_minus  # the label rows were perturbed
    assert all(torch.equal(a, b) for a, b in zip(snapshot, bundle.params, strict=True))
    # Perturbing only the rows moves the loss: the task reads the copy, not the head.
    rows_only = _bundle(LABEL_ROWS_NAME)
    est2 = Estimator(rows_only, Task.from_config(CLS, rows_only.tokenizer), eps=1e-2).estimate(
        enc, seed=7)
    assert est2.loss_plus != est2.loss_minus


def test_unsliceable_head_falls_back_to_full_logits() -> None:
    bundle = _bundle("model.norm.weight")
    task = Task.from_config(dataclasses.replace(CLS), bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    reference = task.loss(bundle.model, enc)
    original = bundle.model.get_output_embeddings
    bundle.model.get_output_embeddings = lambda: None  # e.g. a custom, non-linear head
    try:
        assert task.loss(bundle.model, enc) == pytest.approx(reference, rel=1e-5)
    finally:
        bundle.model.get_output_embeddings = original
