"""The worked examples under examples/: configs, prepared data, and one short run.

Each example folder holds a swarm.toml, a prepare.py that writes its data from
installed PyPI assets, and a README whose commands name those files. These
tests load the configs with seedfl's own loader, run each prepare.py into a
temporary folder and read the result back with seedfl's data loader, and run
the instruction example's config for two steps with the real model swapped for
the built-in random ``seedfl:tiny`` (the real 135M model is too slow for tests).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from seedfl.core.config import SwarmConfig, load_config
from seedfl.training.assets import AssetError
from seedfl.training.data import load_examples

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ("sentiment", "instruction", "shakespeare")


def _prepare_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}_prepare",
                                                  EXAMPLES / name / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepare(name: str, out: Path) -> dict[str, Path]:
    try:
        paths: dict[str, Path] = _prepare_module(name).prepare(out)
    except AssetError as exc:  # the asset packages are data-only PyPI installs
        pytest.skip(str(exc))
    return paths


def _config(name: str) -> SwarmConfig:
    return load_config(EXAMPLES / name / "swarm.toml")


# -- configs ---------------------------------------------------------------------------


def test_sentiment_config_is_the_mezo_prompt_recipe() -> None:
    cfg = _config("sentiment")
    assert cfg.model.name == "seedfl:smollm2-135m"
    assert cfg.model.trainable == ("model.norm.weight",)
    assert cfg.model.lora is None
    assert cfg.task.type == "classification"
    assert cfg.task.template == "{text} It was"
    assert cfg.task.verbalizer == (("0", " terrible"), ("1", " great"))
    assert cfg.task.max_length == 48
    assert (cfg.zo.eps, cfg.zo.lr, cfg.zo.batch_size) == (1e-3, 1e-2, 8)
    assert cfg.codec.name == "log8"
    assert cfg.swarm.name == "sentiment-example"


def test_instruction_config_trains_the_norms_on_completions() -> None:
    cfg = _config("instruction")
    assert cfg.model.name == "seedfl:smollm2-135m"
    assert cfg.model.trainable == ("*norm.weight",)
    assert cfg.model.lora is None
    assert cfg.task.type == "completion"
    assert (cfg.task.prompt_field, cfg.task.completion_field) == ("prompt", "completion")
    assert cfg.task.max_length == 48
    assert (cfg.zo.eps, cfg.zo.lr, cfg.zo.batch_size) == (1e-3, 1e-4, 8)
    assert cfg.codec.name == "log8"


def test_shakespeare_config_is_plain_language_modelling() -> None:
    cfg = _config("shakespeare")
    assert cfg.model.name == "seedfl:smollm2-135m"
    assert cfg.model.trainable == ("*norm.weight",)
    assert cfg.task.type == "causal_lm"
    assert cfg.task.max_length == 64
    assert (cfg.zo.eps, cfg.zo.lr, cfg.zo.batch_size) == (1e-3, 1e-3, 8)
    assert cfg.codec.name == "log8"


def test_the_three_swarms_have_distinct_fingerprints() -> None:
    assert len({_config(n).fingerprint() for n in NAMES}) == 3


# -- prepared data ----------------------------------------------------------------------


def test_sentiment_prepare_writes_balanced_disjoint_splits(tmp_path: Path) -> None:
    paths = _prepare("sentiment", tmp_path)
    assert sorted(paths) == ["holdout", "node0", "node1", "node2"]
    task = _config("sentiment").task
    splits = {name: load_examples(p, task) for name, p in paths.items()}
    assert {n: len(e) for n, e in splits.items()} == {
        "holdout": 200, "node0": 500, "node1": 500, "node2": 500}
    for examples in splits.values():
        assert Counter(e.label for e in examples) == {"0": len(examples) // 2,
                                                      "1": len(examples) // 2}
        assert all(e.text and not e.prompt for e in examples)
    texts = [e.text for examples in splits.values() for e in examples]
    assert len(set(texts)) == len(texts)


def test_instruction_prepare_writes_checkable_pairs(tmp_path: Path) -> None:
    paths = _prepare("instruction", tmp_path)
    assert sorted(paths) == ["holdout", "node0", "node1"]
    task = _config("instruction").task
    splits = {name: load_examples(p, task) for name, p in paths.items()}
    assert {n: len(e) for n, e in splits.items()} == {"holdout": 50, "node0": 100, "node1": 100}
    prompts = [e.prompt for examples in splits.values() for e in examples]
    assert len(set(prompts)) == len(prompts) == 250
    # Fixed by the seed: the same files on every machine and every run.
    first = splits["node0"][0]
    assert (first.prompt, first.completion) == (
        "Instruction: How many words are in: dragon river\nAnswer:", " 2")
    for examples in splits.values():
        kinds = Counter(e.prompt.split(":")[1].split()[0] for e in examples)
        assert kinds == {k: len(examples) // 5 for k in ("Convert", "Reverse", "Sort", "What",
                                                         "How")}
    for e in (e for examples in splits.values() for e in examples):
        assert e.prompt.startswith("Instruction: ") and e.prompt.endswith("\nAnswer:")
        question = e.prompt.removeprefix("Instruction: ").removesuffix("\nAnswer:")
        assert e.completion == " " + _answer(question)


def _answer(question: str) -> str:
    """The right answer to one of prepare.py's instructions, computed independently."""
    head, _, body = question.partition(": ")
    if head == "Convert to uppercase":
        return body.upper()
    if head == "Reverse the order of the words":
        return " ".join(body.split()[::-1])
    if head == "Sort the words alphabetically":
        return " ".join(sorted(body.split()))
    if head == "How many words are in":
        return str(len(body.split()))
    a, b = re.fullmatch(r"What is (\d+) \+ (\d+)\?", question).groups()  # type: ignore[union-attr]
    return str(int(a) + int(b))


def test_shakespeare_prepare_writes_intact_chunks(tmp_path: Path) -> None:
    paths = _prepare("shakespeare", tmp_path)
    assert sorted(paths) == ["holdout", "node0", "node1"]
    module = _prepare_module("shakespeare")
    written = module.make_splits("hamlet")
    task = _config("shakespeare").task
    for name, path in paths.items():
        examples = load_examples(path, task)
        # One example per chunk: none was long enough for the loader to cut again.
        assert [e.text for e in examples] == written[name]
        assert all(0 < len(e.text) <= module.CHUNK_CHARS for e in examples)
    assert written["node0"][0].startswith("ACT I.\nScene I. Elsinore.")
    assert written["holdout"][-1].endswith("ordnance is shot off.]")
    n_train = len(written["node0"]) + len(written["node1"])
    assert len(written["holdout"]) == round(0.1 * (n_train + len(written["holdout"])))
    assert not set(written["holdout"]) & set(written["node0"] + written["node1"])


@pytest.mark.parametrize("name", NAMES)
def test_readme_names_only_files_that_exist(name: str, tmp_path: Path) -> None:
    readme = (EXAMPLES / name / "README.md").read_text(encoding="utf-8")
    written = {p.name for p in _prepare(name, tmp_path / "data").values()}
    mentioned = set(re.findall(r"data/([\w.]+\.(?:jsonl|txt))", readme))
    assert mentioned, "the README shows no data file"
    assert mentioned <= written
    assert "--config swarm.toml" in readme and "python prepare.py" in readme
    assert (EXAMPLES / "README.md").read_text(encoding="utf-8").count(f"({name}/)") == 1


# -- a short run ------------------------------------------------------------------------


def test_instruction_example_runs_two_steps_on_a_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seedfl.cli import main

    text = (EXAMPLES / "instruction" / "swarm.toml").read_text(encoding="utf-8")
    swapped = text.replace('name = "seedfl:smollm2-135m"', 'name = "seedfl:tiny"', 1)
    assert swapped != text
    cfg_path = tmp_path / "swarm.toml"
    cfg_path.write_text(swapped, encoding="utf-8")
    data = _prepare("instruction", tmp_path / "data")
    state = tmp_path / "node1"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", SEEDFL_LOG="WARNING")
    proc = subprocess.run(
        [sys.executable, "-m", "seedfl", "run", "--config", str(cfg_path),
         "--data", str(data["node0"]), "--state-dir", str(state), "--listen", "127.0.0.1:0",
         "--no-mdns", "--quiet", "--max-steps", "2", "--exit-after-steps"],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert main(["eval", "--state-dir", str(state), "--data", str(data["holdout"]),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["updates_applied"] == 2
    assert result["examples"] == 50
    assert result["accuracy"] is None
    # A random model over the byte tokenizer's 256 symbols scores about ln 256.
    assert abs(result["loss"] - math.log(256)) < 0.5



def test_python_api_example_runs(tmp_path: Path) -> None:
    """examples/python_api/two_nodes.py as a user runs it: two nodes, one export."""
    run = subprocess.run([sys.executable, str(EXAMPLES / "python_api" / "two_nodes.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "applied 100 updates" in run.stdout, run.stdout
    assert (tmp_path / "model" / "config.json").is_file()
    assert json.loads((tmp_path / "model" / "seedfl.json").read_text())["n_trainable"] > 0
