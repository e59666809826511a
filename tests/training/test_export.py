"""export_model writes a plain transformers directory that reloads offline, same logits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from seedfl.core.config import LoraConfig, ModelConfig
from seedfl.training.export import export_model
from seedfl.training.model import ModelBundle, load_model

TINY = ModelConfig(name="seedfl:tiny")
TEXTS = ["The movie was great.", "Terrible, boring plot!", "ok"]


def nudge(bundle: ModelBundle) -> None:
    """Move θ away from θ₀ so the export must carry the trained values."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in bundle.params:
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    bundle.sync_to_model()


def logits(model: object, tokenizer: object) -> torch.Tensor:
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")  # type: ignore[operator]
    with torch.inference_mode():
        return model(**enc).logits  # type: ignore[operator, no-any-return]


def reload(out: Path) -> tuple[object, object]:
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model.eval()
    return model, tokenizer


def test_export_reload_gives_identical_logits(tmp_path: Path) -> None:
    bundle = load_model(TINY)
    nudge(bundle)
    before = logits(bundle.model, bundle.tokenizer)
    out = export_model(bundle, tmp_path / "export", info={"updates": 42})
    model, tokenizer = reload(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert torch.equal(logits(model, tokenizer), before)
    assert tokenizer("hé")["input_ids"] == [104, 0xC3, 0xA9]  # type: ignore[operator]
    info = json.loads((out / "seedfl.json").read_text())
    assert info["updates"] == 42 and info["n_trainable"] == bundle.n_trainable
    assert info["model_fingerprint"] == bundle.fingerprint.hex()


def test_lora_export_is_merged_and_bundle_untouched(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, lora=LoraConfig(r=4, alpha=8,
                                                    target_modules=("q_proj", "v_proj")))
    bundle = load_model(cfg)
    nudge(bundle)  # lora_B leaves zero, so the adapters change the outputs
    before = logits(bundle.model, bundle.tokenizer)
    plain = load_model(TINY)
    assert not torch.allclose(before, logits(plain.model, plain.tokenizer))
    out = export_model(bundle, tmp_path / "lora")
    model, tokenizer = reload(out)
    assert not any("lora" in n for n, _ in model.named_parameters())  # type: ignore[attr-defined]
    assert torch.allclose(logits(model, tokenizer), before, atol=1e-5, rtol=1e-5)
    assert torch.equal(logits(bundle.model, bundle.tokenizer), before)  # still a peft model
    assert not (out / "adapter_config.json").exists()


def test_half_precision_export_writes_masters(tmp_path: Path) -> None:
    bundle = load_model(dataclasses.replace(TINY, dtype="bfloat16"))
    with torch.no_grad():
        bundle.params[0].fill_(0.125)  # written to the masters only, no sync
    out = export_model(bundle, tmp_path / "bf16")
    model = AutoModelForCausalLM.from_pretrained(out, dtype="auto", local_files_only=True)
    weight = dict(model.named_parameters(remove_duplicate=False))[bundle.names[0]]
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight, torch.full_like(weight, 0.125))
