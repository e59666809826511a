"""load_model: canonical θ order, tied weights once, deterministic init, selection, dtypes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seedfl.core.config import LoraConfig, ModelConfig, TinyModelConfig
from seedfl.training.model import ModelError, load_model

TINY = ModelConfig(name="seedfl:tiny")


def with_(cfg: ModelConfig, **changes: object) -> ModelConfig:
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


def test_canonical_order_and_tied_weights_counted_once() -> None:
    b = load_model(TINY)
    every = dict(b.model.named_parameters(remove_duplicate=False))
    assert b.model.lm_head.weight is b.model.model.embed_tokens.weight
    # 2 layers x 9 tensors + embed + norm + lm_head, lm_head tied to embed.
    assert len(every) == 21
    assert len(b.names) == len(every) - 1 == 20
    assert b.names == sorted(b.names)
    assert "lm_head.weight" in b.names and "model.embed_tokens.weight" not in b.names
    assert b.n_trainable == sum(p.numel() for p in b.params)
    assert b.n_trainable == sum(p.numel() for p in every.values()) - 256 * 32
    for name, master, mp in zip(b.names, b.params, b.model_params, strict=True):
        assert mp is every[name]
        assert master.dtype == torch.float32 and master.is_contiguous()
        # float32: the master IS the model's storage, no copy.
        assert master.data_ptr() == mp.data_ptr()
    assert not any(p.requires_grad for p in b.model.parameters())
    assert not b.model.training


def test_tiny_init_is_deterministic_and_seeded() -> None:
    state = torch.random.get_rng_state()
    a, b = load_model(TINY), load_model(TINY)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 32
    assert all(torch.equal(x, y) for x, y in zip(a.params, b.params, strict=True))
    other = load_model(with_(TINY, tiny=TinyModelConfig(init_seed=1)))
    assert other.fingerprint != a.fingerprint
    assert not torch.equal(other.params[0], a.params[0])


def test_fingerprint_is_of_theta0_selection_and_dtype() -> None:
    a = load_model(TINY)
    at_load = a.fingerprint
    with torch.no_grad():
        a.params[3].view(-1)[0] += 1.0
    assert a.fingerprint == at_load  # computed once, at load
    assert load_model(with_(TINY, trainable=("model.layers.*",))).fingerprint != at_load
    assert load_model(with_(TINY, dtype="bfloat16")).fingerprint != at_load
    gqa = load_model(with_(TINY, tiny=TinyModelConfig(num_key_value_heads=2)))
    assert gqa.fingerprint != at_load
    assert gqa.model.model.layers[0].self_attn.k_proj.weight.shape == (16, 32)


def test_globs_select_parameters() -> None:
    b = load_model(with_(TINY, trainable=("*.self_attn.q_proj.*", "model.norm.weight")))
    assert b.names == [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.norm.weight",
    ]
    assert b.n_trainable == 2 * 32 * 32 + 32
    # A tied tensor is selected through any of its names, under its canonical one.
    emb = load_model(with_(TINY, trainable=("model.embed_tokens.*",)))
    assert emb.names == ["lm_head.weight"] and emb.n_trainable == 256 * 32


def test_glob_matching_nothing_names_real_parameters() -> None:
    with pytest.raises(ModelError, match=r"'decoder\.\*' matches no parameter.*model\.layers"):
        load_model(with_(TINY, trainable=("model.*", "decoder.*")))


def test_half_precision_keeps_fp32_masters_and_syncs() -> None:
    b = load_model(with_(TINY, dtype="float16"))
    ref = load_model(TINY)
    assert b.dtype == torch.float16
    assert all(p.dtype == torch.float16 for p in b.model.parameters())
    for master, mp, r in zip(b.params, b.model_params, ref.params, strict=True):
        assert master.dtype == torch.float32 and master.data_ptr() != mp.data_ptr()
        assert torch.equal(master, r.half().float())  # masters start at θ₀ rounded once
    with torch.no_grad():
        b.params[0].add_(0.5)
    assert not torch.equal(b.model_params[0].float(), b.params[0])
    b.sync_to_model()
    assert torch.equal(b.model_params[0], b.params[0].half())


def test_trainable_state_round_trip_and_validation() -> None:
    a, b = load_model(TINY), load_model(with_(TINY, tiny=TinyModelConfig(init_seed=7)))
    b.load_trainable(a.trainable_state())
    assert all(torch.equal(x, y) for x, y in zip(a.params, b.params, strict=True))
    ids = torch.tensor([[104, 105, 33, 254]])
    with torch.inference_mode():
        assert torch.equal(a.model(ids).logits, b.model(ids).logits)
    state = a.trainable_state()
    state.pop("model.norm.weight")
    with pytest.raises(ModelError, match=r"missing \['model\.norm\.weight'\]"):
        b.load_trainable(state)
    state = a.trainable_state()
    state["model.norm.weight"] = torch.zeros(3)
    with pytest.raises(ModelError, match="shape"):
        b.load_trainable(state)


def test_lora_trains_only_adapters_with_deterministic_init() -> None:
    cfg = with_(TINY, lora=LoraConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    a, b = load_model(cfg), load_model(cfg)
    assert a.lora and a.fingerprint == b.fingerprint
    assert len(a.names) == 2 * 2 * 2  # layers x (q, v) x (A, B)
    assert all(".lora_A." in n or ".lora_B." in n for n in a.names)
    assert a.n_trainable == 2 * 2 * (4 * 32 + 32 * 4)
    assert not any(p.requires_grad for p in a.model.parameters())
    only_a = load_model(with_(cfg, trainable=("*lora_A*",)))
    assert len(only_a.names) == 4


def test_tokenizer_is_bytes_with_eos_and_pad() -> None:
    tok = load_model(TINY).tokenizer
    assert (tok.eos_token_id, tok.pad_token_id) == (254, 255)
    enc = tok(["hé", "a"], padding=True)
    assert enc["input_ids"] == [[104, 0xC3, 0xA9], [97, 255, 255]]
    assert enc["attention_mask"] == [[1, 1, 1], [1, 0, 0]]
    assert tok.decode([104, 0xC3, 0xA9, 254], skip_special_tokens=True) == "hé"


def test_bad_device_and_missing_model_say_what_to_do(tmp_path: object) -> None:
    with pytest.raises(ModelError, match="cpu, cuda"):
        load_model(TINY, device="tpu")
    with pytest.raises(ModelError, match="seedfl:tiny"):
        load_model(with_(TINY, name=str(tmp_path)))


@pytest.mark.slow
def test_demo_model_loads_from_the_pypi_gguf() -> None:
    from seedfl.training.assets import AssetError, smollm2_model_dir

    try:
        smollm2_model_dir()  # first call converts the GGUF (about a minute), then cached
    except AssetError as exc:
        pytest.skip(str(exc))
    b = load_model(ModelConfig(name="seedfl:smollm2-135m"))
    assert len(b.names) == 30 * 9 + 2 and b.names == sorted(b.names)
    assert b.n_trainable == 134_515_008  # SmolLM2-135M, embeddings tied to the head
    assert b.tokenizer.pad_token_id == b.tokenizer.eos_token_id is not None
    enc = b.tokenizer(["Review: a wonderful, moving film\nSentiment:"], return_tensors="pt")
    with torch.inference_mode():
        top = int(b.model(**enc).logits[0, -1].argmax())
    assert b.tokenizer.decode([top]) == " positive"
