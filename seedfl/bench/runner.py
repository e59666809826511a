"""``seedfl bench``: run one benchmark or all of them and print JSON.

Benchmarks are not timed tests: each reports ratios measured in one run, on
this machine, under whatever else it is doing. The README's performance table
is produced by ``seedfl bench all --json``.

Every report carries ``provenance.describe`` (machine, versions, git commit,
command line, UTC date), and every bench result carries the notes it made
(``weights``, ``data``: real or stand-in). ``--out PATH`` writes the report
there as well. Progress and each result go to stderr as each bench finishes,
so a long ``all`` run shows where it is. A bench that raises is recorded
with its ``error`` and the command exits 1 (after running the others).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from seedfl.bench import provenance

EXIT_BENCH_FAILED = 1


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


# Codecs the wire bench runs (``--codec log8,sign1``): one swarm each.
WIRE_CODECS: list[str] = ["log8"]
WIRE_RATES = (5.0, 50.0)


def _wire(quick: bool) -> dict[str, Any]:
    from seedfl.bench.wire import bench_wire

    if quick:
        if len(WIRE_CODECS) == 1:
            return bench_wire(quick=quick, codec=WIRE_CODECS[0])
        return {"by_codec": {c: bench_wire(quick=quick, codec=c) for c in WIRE_CODECS}}
    # A steady swarm and a busy one (5 and 50 steps/s per node), each codec.
    return {"by_codec": {c: {f"{r:g}_steps_per_s": bench_wire(codec=c, rate=r)
                             for r in WIRE_RATES} for c in WIRE_CODECS}}


def _pool(quick: bool) -> dict[str, Any]:
    from seedfl.bench.pool import bench_pool

    return bench_pool(quick=quick)


def _catchup(quick: bool) -> dict[str, Any]:
    from seedfl.bench.catchup import bench_catchup

    return bench_catchup(quick=quick)


# The largest swarm the scale bench simulates (``--nodes``); it also runs 10, 100, ...
SCALE_NODES = [1000]


def _scale(quick: bool) -> dict[str, Any]:
    from seedfl.bench.scale import bench_scale, sizes_up_to

    return bench_scale(sizes_up_to(100 if quick else SCALE_NODES[0]), quick=quick)


# Steps per node, held-out size and PNG path of the learning bench; None = defaults.
LEARNING_OVERRIDES: dict[str, int | str | None] = {"steps": None, "holdout": None,
                                                   "png": None}


def _learning(quick: bool) -> dict[str, Any]:
    from seedfl.bench.learning import bench_learning

    o = LEARNING_OVERRIDES
    steps, holdout, png = o["steps"], o["holdout"], o["png"]
    return bench_learning(quick=quick, steps=steps if isinstance(steps, int) else None,
                          holdout=holdout if isinstance(holdout, int) else None,
                          png=png if isinstance(png, str) else None)


BENCHES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "replay": _replay,
    "step": _step,
    "memory": _memory,
    "wire": _wire,
    "pool": _pool,
    "catchup": _catchup,
    "learning": _learning,
    "scale": _scale,
}


def bench_command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    names = list(BENCHES) if args.what == "all" else [args.what]
    report: dict[str, Any] = provenance.describe(sys.argv[1:] if argv is None else argv)
    LEARNING_OVERRIDES.update(steps=getattr(args, "steps", None),
                              holdout=getattr(args, "holdout", None),
                              png=getattr(args, "png", None))
    SCALE_NODES[:] = [getattr(args, "nodes", None) or 1000]
    codecs = getattr(args, "codec", None)
    WIRE_CODECS[:] = codecs.split(",") if codecs else ["log8"]
    threads = torch.get_num_threads()
    failed = []
    for i, name in enumerate(names, 1):
        torch.set_num_threads(threads)  # a bench that changes it must not change the next
        t0 = time.perf_counter()
        print(f"bench {name} ({i}/{len(names)}) ...", file=sys.stderr, flush=True)
        provenance.take_notes()  # nothing left over from the previous bench
        try:
            result = BENCHES[name](args.quick)
        except Exception as exc:  # one broken bench must not hide the others
            result = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        result.update(provenance.take_notes())
        result["seconds"] = round(time.perf_counter() - t0, 2)
        report[name] = result
        stream = sys.stderr if args.json else sys.stdout
        status = "FAILED" if name in failed else "done"
        print(f"bench {name} {status} in {result['seconds']}s: {json.dumps(result, indent=1)}",
              file=stream, flush=True)
    if args.json:
        print(json.dumps(report, indent=1))
    out = getattr(args, "out", None)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    if failed:
        print(f"seedfl bench: failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_BENCH_FAILED
    return 0
