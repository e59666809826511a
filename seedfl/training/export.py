"""Export the trained model as a plain transformers directory (DESIGN §1, §10).

``export_model(bundle, out_dir)`` writes what ``AutoModelForCausalLM`` and
``AutoTokenizer.from_pretrained(out_dir)`` load with no network and no seedfl:
config, safetensors weights, generation config and tokenizer files, plus a
small ``seedfl.json`` describing where the weights came from.

- Half precision: the fp32 masters are written back into the model first, so
  the export holds θ rounded once, in the model's dtype.
- LoRA: the adapters are merged into the base weights of a *copy* of the
  model (merging in place and unmerging would not restore the base weights
  bit for bit), so the export needs no peft and the running bundle is
  untouched. That copy costs one model's memory for the duration.
- Trained label rows (label_rows.py) are folded into the head of a copy, untied
  from the input embeddings, so plain transformers computes the task's logits.

This module knows nothing about training, the swarm or checkpoints; the
caller loads the weights it wants into the bundle before exporting.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seedfl.training.label_rows import LABEL_ROWS_ATTR, fold_label_rows
from seedfl.training.model import ModelBundle, ModelError

INFO_FILE = "seedfl.json"


def export_model(
    bundle: ModelBundle,
    out_dir: str | os.PathLike[str],
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``bundle`` as a transformers model directory at ``out_dir``; return it.

    ``info`` (JSON-able, e.g. the version vector and the config fingerprint)
    is stored in ``seedfl.json`` next to the weights.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ModelError(f"export: {out} exists and is not a directory; choose another path")
    out.mkdir(parents=True, exist_ok=True)
    bundle.sync_to_model()
    model = _merged(bundle) if bundle.lora else bundle.model
    if getattr(model, LABEL_ROWS_ATTR, None) is not None:
        if model is bundle.model:
            model = _copy(bundle)  # folding unties the head: never in the running model
        fold_label_rows(model)
    model.save_pretrained(out)
    bundle.tokenizer.save_pretrained(out)
    record = {
        "format": "seedfl-export/v1",
        "trainable": list(bundle.names),
        "n_trainable": bundle.n_trainable,
        "model_fingerprint": bundle.fingerprint.hex(),
        "lora_merged": bundle.lora,
        "dtype": str(bundle.dtype).removeprefix("torch."),
        **dict(info or {}),
    }
    (out / INFO_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                 encoding="utf-8")
    return out


def plain_model(bundle: ModelBundle) -> Any:
    """A copy of the model at θ as plain transformers would load it from an export.

    LoRA merged, label rows folded; the running bundle is untouched. Costs one
    model's memory. The caller makes sure θ does not move meanwhile.
    """
    bundle.sync_to_model()
    model = _merged(bundle) if bundle.lora else _copy(bundle)
    if getattr(model, LABEL_ROWS_ATTR, None) is not None:
        fold_label_rows(model)
    return model


def _copy(bundle: ModelBundle) -> Any:
    try:
        return copy.deepcopy(bundle.model)
    except Exception as exc:  # accelerate-dispatched models may refuse to copy
        raise ModelError(
            f"export: cannot copy the model to fold its adapters or label rows "
            f"({type(exc).__name__}: {exc}); export from a node started with --device cpu"
        ) from exc


def _merged(bundle: ModelBundle) -> Any:
    """A peft-free copy of the model with every LoRA adapter folded into its base layer."""
    merged = _copy(bundle).merge_and_unload()
    merged.eval()
    return merged
