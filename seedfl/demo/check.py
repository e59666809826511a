"""Accuracy of an exported model computed with plain transformers, not seedfl.

The demo prints this next to seedfl's own number: an exported directory must
load with ``AutoModelForCausalLM.from_pretrained`` and reproduce the accuracy.
The only shared pieces are the prompt template, the verbalizer words and the
length limit, read from the swarm config; tokenization, truncation, padding
and scoring are done here again, independently of seedfl/training/task.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from seedfl.core.config import load_config


def _truncate(ids: list[int], limit: int, bos: int | None) -> list[int]:
    """Keep the prompt's end (next to the label word), and BOS if the model uses one."""
    if len(ids) <= limit:
        return ids
    head = ids[:1] if bos is not None and ids[0] == bos else []
    return head + ids[len(ids) - limit + len(head):]


def plain_transformers_accuracy(model_dir: Path, data: Path, cfg_path: Path, limit: int,
                                batch_size: int = 32) -> float:
    cfg = load_config(cfg_path).task
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()  # type: ignore[no-untyped-call]
    labels = [k for k, _ in cfg.verbalizer]
    word_ids = [tok(w, add_special_tokens=False)["input_ids"][0] for _, w in cfg.verbalizer]
    rows = [json.loads(line) for line in Path(data).read_text().split("\n") if line.strip()]
    rows = rows[:limit]
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            seqs = [_truncate(tok(cfg.template.format(text=r[cfg.text_field]))["input_ids"],
                              cfg.max_length, tok.bos_token_id) for r in chunk]
            width = max(len(s) for s in seqs)
            # Right padding under a causal mask leaves every real position as it was.
            ids = torch.zeros((len(seqs), width), dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, :len(s)] = torch.tensor(s)
                mask[i, :len(s)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits
            last = logits[torch.arange(len(seqs)), mask.sum(dim=1) - 1]
            preds = last[:, word_ids].argmax(dim=1).tolist()
            truth = [str(r[cfg.label_field]) for r in chunk]
            correct += sum(labels[p] == t for p, t in zip(preds, truth, strict=True))
    return correct / max(1, len(rows))
