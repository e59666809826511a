"""``seedfl bench``: run one benchmark or all of them and print JSON.

Benchmarks are not timed tests: each reports ratios measured in one run, on
this machine, under whatever else it is doing. The README's performance table
is produced by ``seedfl bench all --json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def _replay(quick: bool) -> dict[str, Any]:
    from seedfl.bench.replay import bench_replay

    return bench_replay(n_params=4_000_000 if quick else 135_000_000)


def _step(quick: bool) -> dict[str, Any]:
    from seedfl.bench.models import bench_config
    from seedfl.bench.step import bench_step

    return bench_step(bench_config(quick), quick=quick)


def _memory(quick: bool) -> dict[str, Any]:
    from seedfl.bench.memory import bench_memory

    return bench_memory(quick=quick)


def _wire(quick: bool) -> dict[str, Any]:
    from seedfl.bench.wire import bench_wire

    return bench_wire(quick=quick)


def _pool(quick: bool) -> dict[str, Any]:
    from seedfl.bench.pool import bench_pool

    return bench_pool(quick=quick)


def _catchup(quick: bool) -> dict[str, Any]:
    from seedfl.bench.catchup import bench_catchup

    return bench_catchup(quick=quick)


# Steps per node and held-out size for the learning bench; None = its defaults
# (the full demo recipe takes about an hour on 2 cores).
LEARNING_OVERRIDES: dict[str, int | None] = {"steps": None, "holdout": None}


def _learning(quick: bool) -> dict[str, Any]:
    from seedfl.bench.learning import bench_learning

    return bench_learning(quick=quick, **LEARNING_OVERRIDES)


BENCHES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "replay": _replay,
    "step": _step,
    "memory": _memory,
    "wire": _wire,
    "pool": _pool,
    "catchup": _catchup,
    "learning": _learning,
}


def bench_command(args: argparse.Namespace) -> int:
    names = list(BENCHES) if args.what == "all" else [args.what]
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        }
    }
    LEARNING_OVERRIDES.update(steps=getattr(args, "steps", None),
                              holdout=getattr(args, "holdout", None))
    threads = torch.get_num_threads()
    for name in names:
        torch.set_num_threads(threads)  # a bench that changes it must not change the next
        t0 = time.perf_counter()
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        try:
            result = BENCHES[name](args.quick)
        except Exception as exc:  # one broken bench must not hide the others
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - t0, 2)
        report[name] = result
        if not args.json:
            print(f"{name}: {json.dumps(result, indent=1)}")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0
