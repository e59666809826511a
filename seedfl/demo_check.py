"""Accuracy of an exported model computed with plain transformers, not seedfl.

The demo prints this next to seedfl's own number: an exported directory must
load with ``AutoModelForCausalLM.from_pretrained`` and reproduce the accuracy.
The only shared pieces are the prompt template and the verbalizer words, read
from the swarm config; tokenization, padding and scoring are done here again.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from seedfl.core.config import load_config


def plain_transformers_accuracy(model_dir: Path, data: Path, cfg_path: Path, limit: int) -> float:
    cfg = load_config(cfg_path).task
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    labels = [k for k, _ in cfg.verbalizer]
    word_ids = [tok(w, add_special_tokens=False)["input_ids"][0] for _, w in cfg.verbalizer]
    rows = [json.loads(line) for line in Path(data).read_text().split("\n") if line.strip()]
    rows = rows[:limit]
    correct = 0
    with torch.inference_mode():
        for row in rows:
            prompt = cfg.template.format(text=row[cfg.text_field])
            ids = tok(prompt)["input_ids"]
            if len(ids) > cfg.max_length:  # keep the prompt's end, and BOS if the model uses one
                head = ids[:1] if ids[0] == tok.bos_token_id else []
                ids = head + ids[len(ids) - cfg.max_length + len(head):]
            logits = model(torch.tensor([ids])).logits[0, -1]
            pred = labels[int(torch.argmax(logits[word_ids]))]
            correct += int(pred == str(row[cfg.label_field]))
    return correct / max(1, len(rows))
