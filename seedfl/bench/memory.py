"""Peak memory: ZO training vs inference only vs backprop + AdamW (DESIGN §12).

Each mode runs in a fresh interpreter (``python -m seedfl.bench.memory MODE``)
so its peak resident set size (``ru_maxrss``) is its own. Same model, same
batch. The ratio ``zo / inference`` is what the README reports.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

MODES = ("inference", "zo", "backprop")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_mode(mode: str, quick: bool) -> dict[str, Any]:
    import torch

    from seedfl.bench.models import bench_bundle, bench_config, bench_examples
    from seedfl.core.codecs import make_codec
    from seedfl.core.rule import apply_update_
    from seedfl.training.estimator import Estimator
    from seedfl.training.task import Task

    cfg = bench_config(quick)
    bundle = bench_bundle(cfg, quick)
    task = Task.from_config(cfg.task, bundle.tokenizer)
    encoded = task.encode(bench_examples(cfg, bundle, cfg.zo.batch_size))
    after_load = _peak_rss_mb()
    if mode == "inference":
        for _ in range(2):
            task.loss(bundle.model, encoded)
    elif mode == "zo":
        est = Estimator(bundle, task, cfg.zo.eps, kind=cfg.zo.perturbation)
        codec = make_codec(cfg.codec)
        for seed in range(2):
            g = est.estimate(encoded, seed).g
            code, _ = codec.encode(g, seed)
            apply_update_(bundle.params, seed, -cfg.zo.lr * codec.decode(code),
                          cfg.zo.perturbation)
    elif mode == "backprop":
        model = bundle.model
        for p in model.parameters():
            p.requires_grad_(True)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        model.train()
        for _ in range(2):
            opt.zero_grad()
            loss = task.loss_tensor(model, encoded)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    else:
        raise ValueError(mode)
    return {"mode": mode, "peak_rss_mb": _peak_rss_mb(), "after_load_mb": after_load}


def bench_memory(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in MODES:
        cmd = [sys.executable, "-m", "seedfl.bench.memory", mode] + (["--quick"] if quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            results[mode] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {"modes": results}
    inf = results.get("inference", {}).get("peak_rss_mb")
    for mode in ("zo", "backprop"):
        peak = results.get(mode, {}).get("peak_rss_mb")
        if inf and peak:
            out[f"{mode}_over_inference"] = peak / inf
    return out


if __name__ == "__main__":
    print(json.dumps(_run_mode(sys.argv[1], "--quick" in sys.argv[2:])))
