"""Write the instruction example's data: small string and arithmetic tasks.

Every pair is generated deterministically from SEED and checkable by a
program, so a tuned model can be graded exactly. Five kinds of instruction,
50 distinct prompts each:

    uppercase   "Convert to uppercase: red fox"               -> "RED FOX"
    reverse     "Reverse the order of the words: a b c"       -> "c b a"
    sort        "Sort the words alphabetically: pear fig"     -> "fig pear"
    add         "What is 23 + 58?"                            -> "81"
    count       "How many words are in: the cat sat"          -> "3"

10 prompts of each kind go to the held-out set, the other 40 are dealt to the
nodes in turn, so every split holds every kind:

    data/holdout.jsonl   50 pairs, never trained on
    data/node0.jsonl    100 pairs for node 1
    data/node1.jsonl    100 pairs for node 2

Each line is {"prompt": "Instruction: ...\\nAnswer:", "completion": " ..."};
the completion task scores the completion tokens (and EOS) only.

Usage: python prepare.py [--out DIR]   (default: data/ next to this file)
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

SEED = 0
PER_KIND = 50
HOLDOUT_PER_KIND = 10
N_NODES = 2

WORDS = (
    "apple", "river", "stone", "cloud", "garden", "window", "bread", "music", "yellow",
    "silver", "forest", "candle", "ocean", "paper", "tiger", "winter", "summer", "bridge",
    "castle", "orange", "pencil", "rabbit", "planet", "violin", "mountain", "coffee", "lemon",
    "thunder", "meadow", "harbor", "jacket", "basket", "button", "dragon", "falcon", "honey",
    "island", "kettle", "ladder", "marble", "needle", "pepper", "quartz", "rocket", "saddle",
    "tunnel", "valley",
)

Pair = tuple[str, str]


def _phrase(rng: random.Random, lo: int, hi: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


def _uppercase(rng: random.Random) -> Pair:
    words = " ".join(_phrase(rng, 2, 4))
    return f"Convert to uppercase: {words}", words.upper()


def _reverse(rng: random.Random) -> Pair:
    words = _phrase(rng, 3, 5)
    return f"Reverse the order of the words: {' '.join(words)}", " ".join(reversed(words))


def _sort(rng: random.Random) -> Pair:
    words = _phrase(rng, 3, 5)
    return f"Sort the words alphabetically: {' '.join(words)}", " ".join(sorted(words))


def _add(rng: random.Random) -> Pair:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"What is {a} + {b}?", str(a + b)


def _count(rng: random.Random) -> Pair:
    words = _phrase(rng, 2, 9)
    return f"How many words are in: {' '.join(words)}", str(len(words))


KINDS: dict[str, Callable[[random.Random], Pair]] = {
    "uppercase": _uppercase, "reverse": _reverse, "sort": _sort, "add": _add, "count": _count,
}


def _distinct(make: Callable[[random.Random], Pair], rng: random.Random, n: int) -> list[Pair]:
    seen: dict[str, str] = {}
    while len(seen) < n:
        instruction, answer = make(rng)
        seen.setdefault(instruction, answer)
    return list(seen.items())


def _row(instruction: str, answer: str) -> dict[str, str]:
    return {"prompt": f"Instruction: {instruction}\nAnswer:", "completion": f" {answer}"}


def make_splits() -> dict[str, list[dict[str, str]]]:
    """{"holdout": rows, "node0": rows, ...}: disjoint, every kind in every split."""
    splits: dict[str, list[dict[str, str]]] = {"holdout": []}
    splits.update({f"node{i}": [] for i in range(N_NODES)})
    for k, (kind, make) in enumerate(KINDS.items()):
        pairs = _distinct(make, random.Random(f"{SEED}/{kind}"), PER_KIND)
        splits["holdout"] += [_row(*p) for p in pairs[:HOLDOUT_PER_KIND]]
        for j, pair in enumerate(pairs[HOLDOUT_PER_KIND:]):
            splits[f"node{(k + j) % N_NODES}"].append(_row(*pair))
    for name, rows in splits.items():  # interleave the kinds within each file
        random.Random(f"{SEED}/shuffle/{name}").shuffle(rows)
    return splits


def prepare(out: Path) -> dict[str, Path]:
    """Write the splits as JSONL into ``out``; returns {"holdout": path, "node0": path, ...}."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rows in make_splits().items():
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    args = parser.parse_args(argv)
    for name, path in prepare(args.out).items():
        rows = sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
        print(f"{name:8s} {rows:4d} pairs  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
