"""`seedfl init/run/eval/export` end to end on the tiny model, one node, no peers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, seedfl, write_data

pytestmark = pytest.mark.timeout(300)


def test_init_writes_a_config_that_parses(tmp_path: Path) -> None:
    from seedfl.core.config import SwarmConfig, load_config

    res = seedfl("init", "--out", str(tmp_path / "swarm.toml"))
    assert res.returncode == 0, res.stderr
    assert load_config(tmp_path / "swarm.toml") == SwarmConfig()


def test_config_error_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[zo]\nlearning_rate = 1\n")
    res = seedfl("run", "--config", str(cfg), "--state-dir", str(tmp_path / "s"), "--no-mdns",
                 "--listen", "127.0.0.1:0")
    assert res.returncode == 2
    assert "zo.learning_rate: unknown key" in res.stderr
    assert "Traceback" not in res.stderr


def test_data_error_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "0"}\n{"txt": "b", "label": "1"}\n')
    res = seedfl("run", "--config", str(cfg), "--data", str(data), "--state-dir",
                 str(tmp_path / "s"), "--no-mdns", "--listen", "127.0.0.1:0")
    assert res.returncode == 2, res.stderr
    assert "2" in res.stderr and "text" in res.stderr
    assert "Traceback" not in res.stderr


def test_run_eval_export_round_trip(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    train = write_data(tmp_path / "train.jsonl", 200, seed=1)
    val = write_data(tmp_path / "val.jsonl", 64, seed=2)
    state = tmp_path / "node1"
    node = NodeProc(state, cfg, train, [], extra=["--max-steps", "40", "--exit-after-steps",
                                                  "--checkpoint-every", "25"])
    try:
        assert node.wait(timeout=240) == 0, node.log()
    finally:
        node.kill()
    assert list((state / "checkpoints").glob("ckpt-*.safetensors")), "no checkpoint written"

    res = seedfl("eval", "--state-dir", str(state), "--data", str(val), "--json")
    assert res.returncode == 0, res.stderr
    ours = json.loads(res.stdout.strip().splitlines()[-1])
    assert ours["updates_applied"] == 40
    assert ours["examples"] == 64
    assert 0.0 <= ours["accuracy"] <= 1.0

    out = tmp_path / "model"
    res = seedfl("export", "--state-dir", str(state), "--out", str(out))
    assert res.returncode == 0, res.stderr
    # Reload with plain transformers in a fresh interpreter and score the same data.
    code = (
        "import json,sys,torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from seedfl.core.config import load_config\n"
        "from seedfl.training.task import Task\n"
        "from seedfl.training.data import load_examples\n"
        "from seedfl.training.evaluate import evaluate\n"
        "from types import SimpleNamespace\n"
        f"cfg = load_config({str(cfg)!r})\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}).eval()\n"
        f"tok = AutoTokenizer.from_pretrained({str(out)!r})\n"
        "task = Task.from_config(cfg.task, tok)\n"
        "b = SimpleNamespace(model=m, tokenizer=tok)\n"
        f"r = evaluate(b, task, load_examples({str(val)!r}, cfg.task), 16)\n"
        "print(json.dumps({'loss': r.loss, 'accuracy': r.accuracy}))\n"
    )
    import subprocess

    from nodekit import env

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert theirs["accuracy"] == ours["accuracy"]
    assert abs(theirs["loss"] - ours["loss"]) <= 1e-5 * max(1.0, abs(ours["loss"]))


def test_restart_resumes_from_log_and_checkpoint(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    train = write_data(tmp_path / "train.jsonl", 100, seed=3)
    state = tmp_path / "n"
    for total in (15, 30):
        node = NodeProc(state, cfg, train, [], extra=["--max-steps", str(total),
                                                      "--exit-after-steps",
                                                      "--checkpoint-every", "10"])
        try:
            assert node.wait(timeout=240) == 0, node.log()
        finally:
            node.kill()
    res = seedfl("eval", "--state-dir", str(state), "--data", str(train), "--json",
                 "--limit", "8")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["updates_applied"] == 30


def test_eval_scores_several_templates_of_the_base_model(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    val = write_data(tmp_path / "val.jsonl", 48, seed=2)
    res = seedfl("eval", "--config", str(cfg), "--data", str(val), "--json",
                 "--template", "{text} =", "--template", "Q: {text}\nA:",
                 "--verbalizer", '{"0": "x", "1": "y"}', "--verbalizer", '{"0": "n", "1": "p"}')
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out["zero_shot"]) == {"{text} =", "Q: {text}\nA:"}
    accs = [row["accuracy"] for row in out["prompts"]]
    assert accs == sorted(accs, reverse=True) and all(0.0 <= a <= 1.0 for a in accs)
    assert out["prompts"][-1]["verbalizer"] in ({"0": "x", "1": "y"}, {"0": "n", "1": "p"})
    bad = seedfl("eval", "--config", str(cfg), "--data", str(val), "--template", "{text}",
                 "--verbalizer", '{"1": "y"}')
    assert bad.returncode == 2 and "labels" in bad.stderr and "Traceback" not in bad.stderr
