"""The estimator: exact functional perturbation, no residue, eta = 0 invariance."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from seedfl.core.config import LoraConfig, ModelConfig, TaskConfig
from seedfl.core.perturbation import add_direction_
from seedfl.core.rule import apply_update_
from seedfl.core.seeds import update_seed
from seedfl.training.data import Example, batches
from seedfl.training.estimator import Estimator
from seedfl.training.model import ModelBundle, load_model
from seedfl.training.task import EncodedBatch, Task

TINY = ModelConfig(name="seedfl:tiny")
CLS = TaskConfig(template="{text}=", verbalizer=(("0", "n"), ("1", "y")), max_length=16)
EXAMPLES = [Example(text=t, label=str(i % 2)) for i, t in
            enumerate(["abc", "hello world", "zz", "q", "seedfl", "one two"])]
KEY, ORIGIN = bytes(range(16)), bytes(range(16, 32))


def snapshot(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in bundle.model.state_dict().items()}


def assert_identical(bundle: ModelBundle, before: dict[str, torch.Tensor]) -> None:
    after = bundle.model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    params = dict(bundle.model.named_parameters(remove_duplicate=False))
    for module_name, module in bundle.model.named_modules():
        for attr, p in module._parameters.items():
            if p is None:
                continue
            key = f"{module_name}.{attr}" if module_name else attr
            assert p is params[key]  # the Parameter objects themselves are back


def naive_loss(bundle: ModelBundle, task: Task, enc: EncodedBatch, seed: int,
               alpha: float, kind: str = "rademacher") -> float:
    """Reference: perturb a deep copy's masters in place, then take the loss."""
    twin = copy.deepcopy(bundle)
    for t, master in enumerate(twin.params):
        add_direction_(master, seed, t, alpha, kind)
    twin.sync_to_model()
    return task.loss(twin.model, enc)


@pytest.mark.parametrize(
    "cfg",
    [TINY, dataclasses.replace(TINY, dtype="bfloat16"),
     dataclasses.replace(TINY, lora=LoraConfig(r=2, alpha=4))],
    ids=["fp32", "bf16", "lora"],
)
def test_estimate_equals_explicit_perturbation_and_leaves_no_residue(cfg: ModelConfig) -> None:
    bundle = load_model(cfg)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    eps = 1e-2
    est = Estimator(bundle, task, eps)
    before = snapshot(bundle)
    seed = update_seed(KEY, ORIGIN, 0)
    e = est.estimate(enc, seed)
    assert_identical(bundle, before)
    assert e.loss_plus == naive_loss(bundle, task, enc, seed, eps)
    assert e.loss_minus == naive_loss(bundle, task, enc, seed, -eps)
    assert e.g == (e.loss_plus - e.loss_minus) / (2 * eps)
    assert e.loss_plus != e.loss_minus
    # Tied lm_head/embed is one tensor: the scratch holds one module's worth of it.
    if cfg.lora is None:
        assert est.scratch_elements == 256 * 32
    assert est.estimate(enc, seed) == e  # deterministic


def test_gaussian_kind_matches_explicit_perturbation() -> None:
    bundle = load_model(TINY)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    e = Estimator(bundle, task, 1e-3, kind="gaussian").estimate(enc, 7)
    assert e.loss_plus == naive_loss(bundle, task, enc, 7, 1e-3, "gaussian")


def test_eta_zero_hundred_steps_is_bit_exact() -> None:
    bundle = load_model(TINY)
    task = Task.from_config(CLS, bundle.tokenizer)
    est = Estimator(bundle, task, 1e-3)
    before = snapshot(bundle)
    masters = [p.clone() for p in bundle.params]
    stream = batches(EXAMPLES, ORIGIN, 4)
    gs = []
    for seq in range(100):
        seed = update_seed(KEY, ORIGIN, seq)
        gs.append(est.estimate(task.encode(next(stream)), seed).g)
        apply_update_(bundle.params, seed, -0.0 * gs[-1], "rademacher")
        bundle.sync_to_model()
    assert len({round(g, 6) for g in gs}) > 50  # the steps really probed different directions
    assert_identical(bundle, before)
    assert all(torch.equal(a, b) for a, b in zip(masters, bundle.params, strict=True))


def test_parameters_restored_when_the_forward_raises() -> None:
    bundle = load_model(TINY)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    before = snapshot(bundle)

    def boom(module: Any, args: Any, output: Any) -> None:
        raise RuntimeError("boom")

    handle = bundle.model.model.layers[1].mlp.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        Estimator(bundle, task, 1e-3).estimate(enc, 1)
    handle.remove()
    assert_identical(bundle, before)
    e = Estimator(bundle, task, 1e-3).estimate(enc, 1)  # and it works afterwards
    assert e.loss_plus == naive_loss(bundle, task, enc, 1, 1e-3)


class _Toy(torch.nn.Module):
    """A parameter read outside the forward of the module that holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1, bias=False)
        self.extra = torch.nn.ParameterDict({"w": torch.nn.Parameter(torch.ones(4))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x * self.extra["w"]).pow(2).mean()


class _Shared(torch.nn.Module):
    """A module holding a tensor that, in its forward, calls a module it does not own
    first: nesting the module names do not predict."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Linear(4, 1, bias=False)
        self.user = _User(self.inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.user(x) + self.inner(x)).pow(2).mean()


class _User(torch.nn.Module):
    def __init__(self, shared: torch.nn.Module) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.full((4,), 0.5))
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.shared(x * self.scale)
        return out


class _ToyTask(Task):
    def __init__(self) -> None:
        pass

    def loss(self, model: torch.nn.Module, enc: EncodedBatch) -> float:
        with torch.inference_mode():
            return float(model(enc.input_ids.float()))


@pytest.mark.parametrize("toy", [_Toy, _Shared])
def test_unusual_parameter_use_is_still_perturbed_exactly(toy: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    model = toy().requires_grad_(False)
    named = dict(model.named_parameters())
    names = sorted(named)
    mps = [named[n] for n in names]
    bundle = ModelBundle(model=model, tokenizer=None, names=names,
                         params=[p.detach() for p in mps], model_params=mps,
                         fingerprint=b"", n_trainable=8, device="cpu")
    x = torch.arange(8.0).reshape(2, 4)
    enc = EncodedBatch(x, x, x, x, x)
    task = _ToyTask()
    before = snapshot(bundle)
    e = Estimator(bundle, task, 0.1).estimate(enc, 5)
    assert_identical(bundle, before)
    assert e.loss_plus == pytest.approx(naive_loss(bundle, task, enc, 5, 0.1), rel=1e-6)
    assert e.loss_minus == pytest.approx(naive_loss(bundle, task, enc, 5, -0.1), rel=1e-6)


def test_scaled_estimate_perturbs_each_tensor_by_eps_times_its_scale() -> None:
    cfg = dataclasses.replace(TINY, trainable=("model.norm.weight",
                                               "model.layers.1.mlp.down_proj.weight"))
    bundle = load_model(cfg)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    scales = (2.0, 0.25)
    before = snapshot(bundle)
    est = Estimator(bundle, task, eps=1e-2, scales=scales).estimate(enc, seed=9)
    assert_identical(bundle, before)
    losses = []
    for sign in (1.0, -1.0):
        twin = load_model(cfg)
        for t, p in enumerate(twin.params):
            add_direction_(p, 9, t, sign * 1e-2 * scales[t])
        losses.append(task.loss(twin.model, enc))
    assert est.loss_plus == pytest.approx(losses[0], rel=1e-6)
    assert est.loss_minus == pytest.approx(losses[1], rel=1e-6)
    unscaled = Estimator(bundle, task, eps=1e-2).estimate(enc, seed=9)
    assert unscaled.loss_plus != est.loss_plus


def test_estimate_leaves_the_train_eval_flags_as_it_found_them() -> None:
    bundle = load_model(TINY)
    task = Task.from_config(CLS, bundle.tokenizer)
    enc = task.encode(EXAMPLES)
    est = Estimator(bundle, task, eps=1e-3)
    bundle.model.eval()
    g_eval = est.estimate(enc, 7).g
    assert not any(m.training for m in bundle.model.modules())
    bundle.model.train()
    g_train = est.estimate(enc, 7).g  # computed in eval mode all the same
    assert all(m.training for m in bundle.model.modules())
    assert g_train == g_eval
