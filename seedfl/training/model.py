"""Model loading and the trainable parameter vector θ (DESIGN §2, §10, §11a).

``load_model(cfg.model, device)`` returns a ``ModelBundle``: the model in eval
mode with autograd off everywhere, its tokenizer, and θ as a list of fp32
tensors in the canonical order (trainable parameters sorted by name, a tied
tensor counted once under the first of its names in sorted order).

- fp32 parameters are their own master copies (no extra memory). Half
  precision parameters get an fp32 master; ``sync_to_model()`` rounds the
  masters back into the model after the weights change.
- Every node must start from the same θ₀: random inits (``seedfl:tiny``, LoRA
  adapters) run under a fixed seed in a forked RNG, and ``fingerprint`` hashes
  θ₀ so that a mismatch is visible.

Names: ``seedfl:tiny`` (random Llama, byte tokenizer, no files), ``seedfl:smollm2-135m``
(the demo model, see assets.py), else a local directory or a hub id.
This module knows nothing of updates, seeds, tasks or the swarm.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seedfl.core.config import LoraConfig, ModelConfig, SwarmConfig, TaskConfig, TinyModelConfig
from seedfl.core.errors import UserError
from seedfl.training.byte_tokenizer import EOS_ID, PAD_ID, byte_tokenizer
from seedfl.training.label_rows import (
    LABEL_ROWS_ATTR,
    LABEL_ROWS_NAME,
    LabelRows,
    attach_label_rows,
)

TINY = "seedfl:tiny"
SMOLLM2 = "seedfl:smollm2-135m"
_FINGERPRINT_PERSON = b"seedfl/model/v1"
_LORA_INIT_SEED = 0x5EED_10AA
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?|mps|auto")


class ModelError(UserError, RuntimeError):
    """The model cannot be loaded or selected; the message says what to do."""


@dataclass
class ModelBundle:
    model: Any
    tokenizer: Any
    names: list[str]
    params: list[torch.Tensor]
    model_params: list[torch.nn.Parameter]
    fingerprint: bytes
    n_trainable: int
    device: str
    dtype: torch.dtype = torch.float32
    lora: bool = False

    def sync_to_model(self) -> None:
        """Copy the fp32 masters into the model's own (half precision) tensors."""
        with torch.no_grad():
            for master, mp in zip(self.params, self.model_params, strict=True):
                if master.data_ptr() != mp.data_ptr():
                    mp.data.copy_(master)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """θ by canonical name, as CPU copies (safe to keep while training goes on)."""
        return {n: p.detach().to("cpu", copy=True) for n, p in zip(self.names, self.params,
                                                                      strict=True)}

    state_dict_trainable = trainable_state

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Overwrite θ from ``state`` (same names and shapes as ``self.names``)."""
        missing = [n for n in self.names if n not in state]
        extra = [n for n in state if n not in set(self.names)]
        if missing or extra:
            raise ModelError(
                f"trainable state does not fit this model: missing {missing[:3]}, "
                f"unexpected {extra[:3]}; it was saved for another model or selection"
            )
        for name, master in zip(self.names, self.params, strict=True):
            if tuple(state[name].shape) != tuple(master.shape):
                raise ModelError(
                    f"trainable state {name}: shape {tuple(state[name].shape)}, "
                    f"model has {tuple(master.shape)}"
                )
        with torch.no_grad():
            for name, master in zip(self.names, self.params, strict=True):
                master.copy_(state[name])
        self.sync_to_model()


def load_model(cfg: ModelConfig, device: str = "cpu",
               label_words: Sequence[str] = ()) -> ModelBundle:
    """Load the model named by ``cfg``, select θ, and fingerprint θ₀.

    ``label_words`` (a classification task's verbalizer) attaches the head's rows
    of those words as their own tensor ``seedfl_label_rows.weight`` (label_rows.py),
    kept only if ``cfg.trainable`` selects it.
    """
    dtype = _DTYPES.get(cfg.dtype)
    if dtype is None:
        raise ModelError(f"model.dtype: {cfg.dtype!r} is not one of {', '.join(_DTYPES)}")
    _check_device(device)
    if cfg.name == TINY:
        model, tokenizer = _build_tiny(cfg.tiny), byte_tokenizer()
        model.to(dtype=dtype, device=_resolve_tiny_device(device))
    else:
        source, extra = cfg.name, {}
        if cfg.name == SMOLLM2:
            from seedfl.training.assets import AssetError, smollm2_model_dir

            try:
                source = str(smollm2_model_dir())
            except AssetError as exc:
                raise ModelError(str(exc)) from exc
        else:
            extra = {"revision": cfg.revision or None}
            if cfg.gguf_file:
                extra["gguf_file"] = cfg.gguf_file
        model, tokenizer = _from_pretrained(source, dtype, device, extra)
    model.eval()
    if cfg.lora is not None:
        model = _wrap_lora(model, cfg.lora)
        model.eval()
    rows = _label_rows(model, tokenizer, label_words)
    candidates = {id(p) for p in model.parameters() if p.requires_grad or cfg.lora is None}
    if rows is not None:
        candidates |= {id(p) for p in rows.parameters()}
    model.requires_grad_(False)
    names, model_params = _select(model, cfg.trainable, candidates)
    if rows is not None and not any(n.endswith(LABEL_ROWS_NAME) for n in names):
        # Unselected, a copy would go stale if the head itself trains: use the head.
        delattr(_unwrapped(model), LABEL_ROWS_ATTR)
    offloaded = [n for n, p in zip(names, model_params, strict=True) if p.device.type == "meta"]
    if offloaded:
        raise ModelError(f"device auto offloaded trainable weights ({offloaded[0]}, ...) to disk; "
                         "they cannot be trained there: use LoRA, fewer trainable parameters, "
                         "or a machine with more memory")
    params: list[torch.Tensor] = []
    for p in model_params:
        if p.dtype == torch.float32:
            if not p.is_contiguous():
                p.data = p.data.contiguous()
            params.append(p.detach())
        else:
            params.append(p.detach().to(torch.float32, copy=True).contiguous())
    first = model.get_input_embeddings().weight
    return ModelBundle(
        model=model, tokenizer=tokenizer, names=names, params=params,
        model_params=model_params, fingerprint=_fingerprint(names, params, dtype),
        n_trainable=sum(p.numel() for p in params), device=str(first.device),
        dtype=dtype, lora=cfg.lora is not None,
    )


def load_swarm_model(cfg: SwarmConfig, device: str = "cpu") -> ModelBundle:
    """The model a node of swarm ``cfg`` trains: ``load_model`` with the task's label words.

    Every caller that must agree with a node on θ (its names, its fingerprint, a
    saved state) loads through here; ``load_model(cfg.model)`` alone would miss
    the label rows a classification swarm may train.
    """
    return load_model(cfg.model, device=device, label_words=label_words(cfg.task))


def label_words(task: TaskConfig) -> tuple[str, ...]:
    """The words whose head rows a task reads (``load_model``'s ``label_words``)."""
    return tuple(word for _, word in task.verbalizer) if task.type == "classification" else ()


def _unwrapped(model: Any) -> Any:
    unwrap = getattr(model, "get_base_model", None)  # peft wrappers
    return unwrap() if callable(unwrap) else model


def _label_rows(model: Any, tokenizer: Any, words: Sequence[str]) -> LabelRows | None:
    """Label rows for one-token words (the task reports any other word)."""
    if not words:
        return None
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    if any(len(i) != 1 for i in ids) or len({i[0] for i in ids}) != len(ids):
        return None
    return attach_label_rows(_unwrapped(model), [i[0] for i in ids])


def _check_device(device: str) -> None:
    if not _DEVICE_RE.fullmatch(device):
        raise ModelError(f"device {device!r}: use cpu, cuda, cuda:N, mps or auto")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"device {device}: torch sees no CUDA GPU; use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ModelError(f"device {device}: only {torch.cuda.device_count()} CUDA GPU(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device mps: this torch has no Metal backend; use --device cpu")


def _resolve_tiny_device(device: str) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def _build_tiny(tiny: TinyModelConfig) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    if tiny.vocab_size < 256:
        raise ModelError("model.tiny.vocab_size: must be >= 256 (the byte tokenizer's size)")
    kv_heads = tiny.num_key_value_heads or tiny.num_attention_heads
    if tiny.hidden_size % tiny.num_attention_heads or tiny.num_attention_heads % kv_heads:
        raise ModelError("model.tiny: hidden_size must divide by num_attention_heads, "
                         "and num_attention_heads by num_key_value_heads")
    config = LlamaConfig(
        vocab_size=tiny.vocab_size, hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size, num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.init_seed)
        return LlamaForCausalLM(config)


def _from_pretrained(source: str, dtype: torch.dtype, device: str,
                     extra: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no")
    local = Path(source).expanduser()
    if local.exists():
        source, offline = str(local), True
    kwargs: dict[str, Any] = {**extra, "local_files_only": offline}
    device_map = None if device == "cpu" else device
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, device_map=device_map, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        hint = (
            "it has no model files (config.json and weights)" if local.exists() else
            "it is not a local directory and could not be fetched from the hub"
            + (" (HF_HUB_OFFLINE is set)" if offline else "")
        )
        raise ModelError(
            f"model {source!r}: {hint}. Point model.name at a local transformers directory, "
            f"download it first (`hf download {source}`), or use seedfl:tiny for a smoke test. "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if tokenizer.pad_token_id is None:
        # Batches are padded; the eos token is the conventional stand-in and the
        # attention mask keeps it out of every loss.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _wrap_lora(model: Any, lora: LoraConfig) -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ModelError("model.lora needs peft: pip install 'seedfl[lora]'") from exc
    peft_cfg = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), task_type="CAUSAL_LM",
    )
    # The adapters' random init must be identical on every node.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_LORA_INIT_SEED)
        try:
            with warnings.catch_warnings():
                # peft probes a transformers attribute that 5.x deprecated; not ours to fix.
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
                return peft.get_peft_model(model, peft_cfg)
        except ValueError as exc:
            raise ModelError(f"model.lora.target_modules: {exc}") from exc


def _select(model: Any, patterns: tuple[str, ...],
            candidates: set[int]) -> tuple[list[str], list[torch.nn.Parameter]]:
    """Trainable tensors in canonical order; a tensor matches if any alias matches."""
    aliases: dict[int, list[str]] = {}
    tensors: dict[int, torch.nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
        tensors[id(p)] = p
    pool = {key: sorted(names) for key, names in aliases.items() if key in candidates}
    chosen: set[int] = set()
    for pattern in patterns:
        hits = {k for k, names in pool.items() if any(fnmatch.fnmatchcase(n, pattern)
                                                      for n in names)}
        if not hits:
            some = sorted(n for names in pool.values() for n in names)
            sample = ", ".join(some[:4] + (["...", some[-1]] if len(some) > 4 else []))
            raise ModelError(
                f"model.trainable: pattern {pattern!r} matches no parameter"
                f"{' among the LoRA adapters' if len(pool) < len(aliases) else ''}; "
                f"names look like: {sample}"
            )
        chosen |= hits
    order = sorted(chosen, key=lambda k: pool[k][0])
    return [pool[k][0] for k in order], [tensors[k] for k in order]


def _fingerprint(names: list[str], params: list[torch.Tensor], dtype: torch.dtype) -> bytes:
    h = hashlib.blake2b(digest_size=32, person=_FINGERPRINT_PERSON)
    h.update(str(dtype).encode())
    for name, p in zip(names, params, strict=True):
        h.update(f"\0{name}\0{tuple(p.shape)}\0".encode())
        h.update(p.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.digest()
