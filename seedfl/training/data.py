"""A node's private examples: loading them from disk and ordering them into batches.

Contract:
- ``load_examples(path, task_cfg)`` reads JSONL (``.jsonl``/``.ndjson``, or ``.json``
  holding JSONL or one array of objects), CSV/TSV with a header row, and plain text
  (``.txt``, causal_lm only: paragraphs split on blank lines, long ones cut into
  chunks at whitespace). It keeps only the fields the task reads and refuses bad
  rows with a ``DataError`` that names the file, the line and what to change.
- ``batches(examples, node_id, batch_size)`` is endless. Examples are visited in a
  permutation per epoch drawn from ``blake2b(node_id ‖ epoch)``, so a node's order
  is reproducible across restarts and differs between nodes. Batches always hold
  ``batch_size`` examples: the stream runs on into the next epoch's permutation.
  Torch's global RNG is never touched.
- ``split_holdout(examples, fraction, seed)`` splits deterministically.

This module knows nothing of tokenizers, models or the swarm.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seedfl.core.config import TaskConfig
from seedfl.core.errors import UserError

_JSONL = (".jsonl", ".ndjson", ".json")
_DELIMITED = {".csv": ",", ".tsv": "\t"}
_TEXT = (".txt",)
# Plain text is cut into chunks of about this many characters per max_length token:
# a chunk then fills the context window for typical subword tokenizers.
_CHARS_PER_TOKEN = 4


class DataError(UserError, ValueError):
    """A data file that cannot be used; the message names the file, line and fix."""


@dataclass(frozen=True, slots=True)
class Example:
    """One example. classification: text + label; completion: prompt + completion;
    causal_lm: text."""

    text: str = ""
    label: str = ""
    prompt: str = ""
    completion: str = ""


def _label_string(value: Any) -> str:
    # Labels are compared as strings with the verbalizer keys; JSON numbers and
    # booleans get the spelling a TOML key would have.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _field(row: dict[str, Any], name: str, where: str, option: str) -> str:
    if name not in row or row[name] is None:
        present = ", ".join(repr(k) for k in row) or "none"
        raise DataError(
            f"{where}: missing field {name!r} (fields present: {present}); "
            f"add it, or set {option} in the swarm config to the field that holds it"
        )
    value = row[name]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _example(row: Any, where: str, cfg: TaskConfig) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if cfg.type == "classification":
        text = _field(row, cfg.text_field, where, "task.text_field")
        if cfg.label_field not in row or row[cfg.label_field] is None:
            _field(row, cfg.label_field, where, "task.label_field")
        label = _label_string(row[cfg.label_field])
        known = [k for k, _ in cfg.verbalizer]
        if label not in known:
            raise DataError(
                f"{where}: label {label!r} is not a verbalizer key "
                f"(known: {', '.join(repr(k) for k in known)}); "
                "fix the line or add the label to [task.verbalizer]"
            )
        return Example(text=text, label=label)
    if cfg.type == "completion":
        prompt = _field(row, cfg.prompt_field, where, "task.prompt_field")
        completion = _field(row, cfg.completion_field, where, "task.completion_field")
        return Example(prompt=prompt, completion=completion)
    return Example(text=_field(row, cfg.text_field, where, "task.text_field"))


def _read_jsonl(path: Path, text: str, cfg: TaskConfig) -> list[Example]:
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return [_example(row, f"{path}: item {i}", cfg) for i, row in enumerate(rows)]
    out = []
    # Split on "\n" only: str.splitlines also breaks on U+0085 and friends,
    # which occur inside real review text.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{lineno}: not valid JSON ({exc.msg}); JSONL needs one object per line"
            ) from None
        out.append(_example(row, f"{path}:{lineno}", cfg))
    return out


def _read_delimited(path: Path, text: str, cfg: TaskConfig) -> list[Example]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_DELIMITED[path.suffix])
    out = []
    try:
        for row in reader:
            clean = {k: v for k, v in row.items() if k is not None}
            out.append(_example(clean, f"{path}:{reader.line_num}", cfg))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return out


def _chunks(paragraph: str, limit: int) -> Iterator[str]:
    if len(paragraph) <= limit:
        yield paragraph
        return
    words = paragraph.split()
    current: list[str] = []
    size = 0
    for word in words:
        if current and size + 1 + len(word) > limit:
            yield " ".join(current)
            current, size = [], 0
        current.append(word)
        size += len(word) + (1 if size else 0)
    if current:
        yield " ".join(current)


def _read_text(path: Path, text: str, cfg: TaskConfig) -> list[Example]:
    if cfg.type != "causal_lm":
        raise DataError(
            f"{path}: plain text has no fields; a {cfg.type} task needs JSONL or CSV "
            "(or set task.type = \"causal_lm\")"
        )
    limit = cfg.max_length * _CHARS_PER_TOKEN
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return [Example(text=c) for p in paragraphs if p for c in _chunks(p, limit)]


def load_examples(path: str | Path, task_cfg: TaskConfig) -> list[Example]:
    """Read a node's data file into examples for this task. Raises DataError."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (*_JSONL, *_DELIMITED, *_TEXT):
        raise DataError(
            f"{p}: unknown file type {suffix or '(none)'!r}; use .jsonl, .json, .csv, .tsv or .txt"
        )
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{p}: no such file; pass the path of your data with --data") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from None
    if suffix in _JSONL:
        examples = _read_jsonl(p, text, task_cfg)
    elif suffix in _DELIMITED:
        examples = _read_delimited(p, text, task_cfg)
    else:
        examples = _read_text(p, text, task_cfg)
    if not examples:
        raise DataError(f"{p}: no examples found; a node needs at least one to train")
    return examples


def _epoch_order(n: int, node_id: bytes, epoch: int) -> np.ndarray:
    digest = hashlib.blake2b(
        node_id + epoch.to_bytes(8, "little"), digest_size=16, person=b"seedfl/data/v1"
    ).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))
    return rng.permutation(n)


def batches(
    examples: Sequence[Example], node_id: bytes, batch_size: int
) -> Iterator[list[Example]]:
    """Endless fixed-size batches in a per-(node id, epoch) permutation order."""
    if not examples:
        raise DataError("no examples to draw batches from")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    n = len(examples)
    epoch = 0
    order = _epoch_order(n, node_id, epoch)
    pos = 0
    while True:
        batch: list[Example] = []
        while len(batch) < batch_size:
            if pos == n:
                epoch += 1
                order = _epoch_order(n, node_id, epoch)
                pos = 0
            take = min(batch_size - len(batch), n - pos)
            batch.extend(examples[int(i)] for i in order[pos : pos + take])
            pos += take
        yield batch


def split_holdout(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, holdout): a deterministic share ``fraction`` held out, file order kept."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError("holdout fraction must be in [0, 1)")
    n = len(examples)
    k = min(round(fraction * n), n - 1) if n > 1 else 0
    rng = np.random.Generator(np.random.PCG64(seed))
    held = set(rng.permutation(n)[:k].tolist())
    train = [e for i, e in enumerate(examples) if i not in held]
    holdout = [e for i, e in enumerate(examples) if i in held]
    return train, holdout
