"""The frozen-prefix cache: same losses as the full model, only the layers above run."""

from __future__ import annotations

import logging

import pytest
import torch

from seedfl.core.config import LoraConfig, ModelConfig, TaskConfig, TinyModelConfig
from seedfl.core.rule import apply_update_
from seedfl.training.data import Example
from seedfl.training.estimator import Estimator
from seedfl.training.evaluate import evaluate
from seedfl.training.model import ModelBundle, load_model
from seedfl.training.prefix import FrozenPrefix, find_layers
from seedfl.training.task import Task

DEEP = TinyModelConfig(num_hidden_layers=4)
CLS = TaskConfig(template="{text}=", verbalizer=(("0", "n"), ("1", "y")), max_length=16)
LM = TaskConfig(type="causal_lm", max_length=16)
TEXTS = ["abc", "hello world", "zz", "q", "seedfl", "one two", "a longer sentence here"]
EXAMPLES = [Example(text=t, label=str(i % 2)) for i, t in enumerate(TEXTS)]

# (trainable patterns, expected k) on the 4-layer tiny Llama (tied embedding/head).
SELECTIONS = [
    (("model.norm.weight",), 4),
    (("model.layers.3.*", "model.norm.weight"), 3),
    (("model.layers.2.mlp.*",), 2),
    (("model.layers.1.self_attn.v_proj.weight", "model.layers.3.*"), 1),
    (("model.embed_tokens.weight",), 0),  # tied to lm_head, runs first
    (("model.layers.0.input_layernorm.weight",), 0),
    (("*",), 0),
]


def bundle_for(trainable: tuple[str, ...], lora: LoraConfig | None = None) -> ModelBundle:
    return load_model(ModelConfig(name="seedfl:tiny", tiny=DEEP, trainable=trainable, lora=lora))


def loss_fn(task: Task, bundle: ModelBundle, enc: object):  # type: ignore[no-untyped-def]
    return lambda: task.loss(bundle.model, enc)  # type: ignore[arg-type]


@pytest.mark.parametrize("task_cfg", [CLS, LM], ids=["classification", "causal_lm"])
@pytest.mark.parametrize("trainable, k", SELECTIONS, ids=[str(k) + s[0] for s, k in SELECTIONS])
def test_cached_loss_equals_full_loss(trainable: tuple[str, ...], k: int,
                                      task_cfg: TaskConfig) -> None:
    bundle = bundle_for(trainable)
    task = Task.from_config(task_cfg, bundle.tokenizer)
    prefix = FrozenPrefix.for_bundle(bundle, 16)
    for rows in (EXAMPLES, EXAMPLES[3:] + EXAMPLES[:2], EXAMPLES[1:2]):
        enc = task.encode(rows)
        full = task.loss(bundle.model, enc)
        assert prefix.run(enc, loss_fn(task, bundle, enc)) == pytest.approx(full, rel=1e-5)
        assert prefix.run(enc, loss_fn(task, bundle, enc)) == pytest.approx(full, rel=1e-5)
    assert prefix.k == k
    assert prefix.enabled == (k > 0)
    assert prefix.rows == (len(set(TEXTS)) if k > 0 else 0)


def test_layers_below_k_really_do_not_run() -> None:
    # A frozen weight changed behind the cache's back shows only without it: proof
    # that the cached state, not layer 0, feeds the layers above.
    bundle = bundle_for(("model.layers.3.*",))
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    prefix = FrozenPrefix.for_bundle(bundle, 16)
    before = prefix.run(enc, loss_fn(task, bundle, enc))
    calls: list[int] = []
    handle = bundle.model.model.layers[0].mlp.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        bundle.model.model.layers[1].mlp.down_proj.weight.mul_(3.0)
    assert prefix.run(enc, loss_fn(task, bundle, enc)) == before
    assert calls == []
    assert task.loss(bundle.model, enc) != pytest.approx(before, rel=1e-3)
    prefix.clear()
    assert prefix.run(enc, loss_fn(task, bundle, enc)) == pytest.approx(
        task.loss(bundle.model, enc), rel=1e-5)
    handle.remove()


def test_layer_stack_is_found_under_a_peft_wrapper() -> None:
    bundle = bundle_for(("*layers.3*lora_*",), lora=LoraConfig(r=2, alpha=4))
    layers = find_layers(bundle.model)
    assert layers is not None and len(layers) == 4
    assert layers is bundle.model.get_base_model().model.layers
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    prefix = FrozenPrefix.for_bundle(bundle, 16)
    assert prefix.run(enc, loss_fn(task, bundle, enc)) == pytest.approx(
        task.loss(bundle.model, enc), rel=1e-5)
    assert prefix.k == 3


def test_a_tiny_budget_caches_some_rows_and_stays_exact() -> None:
    bundle = bundle_for(("model.layers.3.*",))
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    row_bytes = 4 * 32 * 8  # float32 x hidden 32 x 8 tokens: room for about 2 short rows
    prefix = FrozenPrefix(bundle.model, bundle.model_params, budget_mb=row_bytes / 2**20)
    full = task.loss(bundle.model, enc)
    assert prefix.run(enc, loss_fn(task, bundle, enc)) == pytest.approx(full, rel=1e-5)
    assert 0 < prefix.rows < len(EXAMPLES)
    assert prefix.cached_bytes <= row_bytes
    other = task.encode(EXAMPLES[::-1])  # a new batch: the uncached rows are recomputed
    assert prefix.run(other, loss_fn(task, bundle, other)) == pytest.approx(
        task.loss(bundle.model, other), rel=1e-5)
    assert prefix.cached_bytes <= row_bytes


def test_budget_zero_turns_it_off() -> None:
    bundle = bundle_for(("model.norm.weight",))
    prefix = FrozenPrefix.for_bundle(bundle, 0)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    prefix.run(enc, loss_fn(task, bundle, enc))
    assert not prefix.enabled and prefix.k is None and prefix.rows == 0


def test_a_mismatch_on_the_first_batch_turns_it_off_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    bundle = bundle_for(("model.layers.3.*",))
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    prefix = FrozenPrefix.build(bundle, 16)
    assert prefix is not None
    real = prefix._stubs

    def corrupt(hidden: torch.Tensor):  # type: ignore[no-untyped-def]
        return real(hidden + 1.0)

    prefix._stubs = corrupt  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING), prefix.active(enc):
        got = task.loss(bundle.model, enc)
    assert got == task.loss(bundle.model, enc)  # the full forward's answer
    assert not prefix.enabled and prefix.rows == 0
    assert "cache off" in caplog.text
    with prefix.active(enc):  # off from now on: every forward in full
        assert task.loss(bundle.model, enc) == got


@pytest.mark.parametrize("trainable", [("model.layers.3.*", "model.norm.weight"),
                                       ("model.layers.2.mlp.*",), ("model.norm.weight",)])
def test_estimator_with_the_cache_matches_without(trainable: tuple[str, ...]) -> None:
    plain, cached = bundle_for(trainable), bundle_for(trainable)
    task = Task.from_config(CLS, plain.tokenizer)
    a = Estimator(plain, task, 1e-3)
    prefix = FrozenPrefix.build(cached, 16)
    assert prefix is not None
    b = Estimator(cached, task, 1e-3, prefix=prefix)
    for seed, rows in [(11, EXAMPLES), (12, EXAMPLES[2:]), (13, EXAMPLES)]:
        enc = task.encode(rows)
        ea, eb = a.estimate(enc, seed), b.estimate(enc, seed)
        assert eb.loss_plus == pytest.approx(ea.loss_plus, rel=1e-5)
        assert eb.loss_minus == pytest.approx(ea.loss_minus, rel=1e-5)
        assert eb.g == pytest.approx(ea.g, rel=1e-4)
        assert ea.loss_plus != ea.loss_minus  # the perturbation above k is seen
    assert prefix.enabled and prefix.rows == len(EXAMPLES)
    for p, q in zip(plain.model.parameters(), cached.model.parameters(), strict=True):
        assert torch.equal(p, q)  # neither estimate wrote a weight


def test_eta_zero_with_the_cache_leaves_the_weights_bit_identical() -> None:
    bundle = bundle_for(("model.layers.3.*", "model.norm.weight"))
    task = Task.from_config(CLS, bundle.tokenizer)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    prefix = FrozenPrefix.build(bundle, 16)
    assert prefix is not None
    est = Estimator(bundle, task, 1e-3, prefix=prefix)
    for seed in range(5):
        enc = task.encode(EXAMPLES[seed % 3:])
        est.estimate(enc, seed)
        apply_update_(bundle.params, seed, 0.0, "rademacher")
    assert prefix.enabled and prefix.rows > 0
    after = bundle.model.state_dict()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def test_evaluate_with_the_cache_matches_and_reuses_it() -> None:
    bundle = bundle_for(("model.layers.3.*",))
    task = Task.from_config(CLS, bundle.tokenizer)
    prefix = FrozenPrefix.build(bundle, 16)
    assert prefix is not None
    plain = evaluate(bundle, task, EXAMPLES, batch_size=3)
    first = evaluate(bundle, task, EXAMPLES, batch_size=3, prefix=prefix)
    assert prefix.rows == len(EXAMPLES)
    second = evaluate(bundle, task, EXAMPLES, batch_size=3, prefix=prefix)
    assert first.loss == pytest.approx(plain.loss, rel=1e-5) and first.accuracy == plain.accuracy
    assert second.loss == first.loss and second.n == plain.n


@pytest.mark.parametrize("trainable, k", SELECTIONS, ids=[str(k) + s[0] for s, k in SELECTIONS])
def test_build_finds_k_or_gives_none(trainable: tuple[str, ...], k: int) -> None:
    bundle = bundle_for(trainable)
    prefix = FrozenPrefix.build(bundle, 16)
    if k == 0:
        assert prefix is None
    else:
        assert prefix is not None and prefix.k == k and prefix.enabled and prefix.rows == 0
    assert FrozenPrefix.build(bundle, 0) is None


def test_build_on_the_default_tiny_model() -> None:
    tiny = load_model(ModelConfig(name="seedfl:tiny", trainable=("model.norm.weight",)))
    n = len(tiny.model.model.layers)
    prefix = FrozenPrefix.build(tiny)
    assert prefix is not None and prefix.k == n
    assert FrozenPrefix.build(load_model(ModelConfig(
        name="seedfl:tiny", trainable=("lm_head.weight",)))) is None  # tied to the embedding
    task = Task.from_config(LM, tiny.tokenizer)
    enc = task.encode(EXAMPLES)
    with prefix.active(enc):
        cached = task.loss(tiny.model, enc)
    assert cached == pytest.approx(task.loss(tiny.model, enc), rel=1e-5)


def test_a_second_active_on_the_same_batch_runs_no_prefix_layer() -> None:
    bundle = bundle_for(("model.layers.3.*", "model.norm.weight"))
    task = Task.from_config(CLS, bundle.tokenizer)
    prefix = FrozenPrefix.build(bundle, 16)
    assert prefix is not None and prefix.k == 3
    layers = bundle.model.model.layers
    calls: list[int] = []
    hooked: list[int] = []
    originals = [layer.forward for layer in layers]

    def counting(i: int):  # type: ignore[no-untyped-def]
        def forward(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(i)
            return originals[i](*args, **kwargs)
        return forward

    for i, layer in enumerate(layers):
        layer.forward = counting(i)
    handle = layers[0].register_forward_pre_hook(lambda *a: hooked.append(0))
    enc = task.encode(EXAMPLES)
    full = task.loss(bundle.model, enc)
    assert calls == [0, 1, 2, 3]
    calls.clear()
    with prefix.active(enc):  # fills the cache (and checks it) before the block
        first = task.loss(bundle.model, enc)
    assert 0 in calls  # the capture pass and the check ran layer 0
    calls.clear()
    hooked.clear()
    with prefix.active(enc):
        second = task.loss(bundle.model, enc)
    assert calls == [3]  # only the trainable layer's own forward ran
    assert hooked == [0]  # the stub still goes through the module's hooks
    assert first == pytest.approx(full, rel=1e-5) and second == first
    for layer in layers:  # restored: the instance forward we had set
        assert layer.__dict__["forward"].__name__ == "forward" and layer.forward is not None
    calls.clear()
    task.loss(bundle.model, enc)
    assert calls == [0, 1, 2, 3]
    handle.remove()


def test_a_tuple_returning_layer_is_captured_and_stubbed_as_a_tuple() -> None:
    # Older decoders returned (hidden_states, ...) from a layer: the capture pass
    # records the type and the stubs answer in kind.
    bundle = bundle_for(("model.layers.3.*",))
    task = Task.from_config(LM, bundle.tokenizer)
    layers = bundle.model.model.layers
    prefix = FrozenPrefix.build(bundle, 16)
    assert prefix is not None and prefix.k == 3
    enc = task.encode(EXAMPLES)
    with prefix.active(enc):  # a tensor-returning pass fills the cache
        task.loss(bundle.model, enc)
    hidden = prefix._hidden(enc)
    assert hidden is not None and prefix._tuple_len == 0
    plain = layers[2].forward
    layers[2].forward = lambda *a, **kw: (plain(*a, **kw), None)
    prefix.clear()
    fresh = prefix._capture([tuple(enc.input_ids[0, : int(enc.attention_mask[0].sum())].tolist())])
    del layers[2].forward
    assert prefix._tuple_len == 2
    (row,) = fresh.values()
    assert torch.allclose(row, hidden[0, : row.shape[0]], rtol=1e-5, atol=1e-6)  # batch of 1
    x = torch.randn_like(hidden)
    with prefix._stubs(hidden):
        a, b = layers[0](x), layers[2](x)
    assert isinstance(a, tuple) and len(a) == 2 and a[0] is x and a[1] is None
    assert isinstance(b, tuple) and torch.equal(b[0], hidden)
    assert "forward" not in layers[0].__dict__ and "forward" not in layers[2].__dict__
