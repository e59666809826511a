"""Write the Shakespeare example's data from the installed shakespeare package.

The play's Gutenberg text (Hamlet by default) from the title page's list of
persons up to "ACT I." is dropped; the rest is packed into chunks of whole
lines of at most CHUNK_CHARS characters (a chunk is about 45 SmolLM2 tokens,
under the config's max_length of 64). Chunks are written one per paragraph:
lines inside a chunk are joined by a single newline and chunks are separated
by a blank line, which is how seedfl reads a .txt file for causal_lm.

    data/holdout.txt   the last 10% of the play's chunks (the end of Act V),
                       never trained on
    data/node0.txt     the other chunks, dealt in turn to node 1 ...
    data/node1.txt     ... and node 2

Usage: python prepare.py [--play hamlet] [--out DIR]   (default: data/ next to this file)
Other plays: macbeth, lear, othello, tempest, romeo_and_juliet, ... (the names
of the package's texts/<play>_gut.txt files).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from seedfl.training.assets import shakespeare_text

# seedfl cuts .txt paragraphs longer than 4 * max_length characters at
# whitespace (and joins them with spaces); staying below keeps chunks intact.
CHUNK_CHARS = 180
HOLDOUT_FRACTION = 0.10
N_NODES = 2


def _lines(text: str) -> list[str]:
    """The play's lines from "ACT I." on; a blank line stays as "" (a speech break)."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == "ACT I."), 0)
    return [line.rstrip() for line in lines[start:]]


def _split_long(line: str) -> Iterator[str]:
    """A line longer than CHUNK_CHARS, cut at spaces (prose passages have such lines)."""
    piece = ""
    for word in line.split():
        if piece and len(piece) + 1 + len(word) > CHUNK_CHARS:
            yield piece
            piece = ""
        piece = f"{piece} {word}" if piece else word
    if piece:
        yield piece


def chunks(text: str) -> list[str]:
    """Consecutive lines packed into chunks of at most CHUNK_CHARS characters."""
    out: list[str] = []
    current: list[str] = []
    for raw in _lines(text):
        for line in _split_long(raw) if len(raw) > CHUNK_CHARS else [raw]:
            if not line.strip():
                continue
            if current and len("\n".join([*current, line])) > CHUNK_CHARS:
                out.append("\n".join(current))
                current = []
            current.append(line.strip())
    if current:
        out.append("\n".join(current))
    return out


def make_splits(play: str = "hamlet") -> dict[str, list[str]]:
    """{"holdout": chunks, "node0": chunks, ...}; disjoint, deterministic."""
    pieces = chunks(shakespeare_text(play).read_text(encoding="utf-8"))
    n_holdout = max(1, round(HOLDOUT_FRACTION * len(pieces)))
    train, holdout = pieces[: len(pieces) - n_holdout], pieces[len(pieces) - n_holdout :]
    splits = {"holdout": holdout}
    splits.update({f"node{i}": train[i::N_NODES] for i in range(N_NODES)})
    return splits


def prepare(out: Path, play: str = "hamlet") -> dict[str, Path]:
    """Write the splits as .txt into ``out``; returns {"holdout": path, "node0": path, ...}."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, pieces in make_splits(play).items():
        path = out / f"{name}.txt"
        path.write_text("\n\n".join(pieces) + "\n", encoding="utf-8")
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--play", default="hamlet")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    args = parser.parse_args(argv)
    for name, path in prepare(args.out, args.play).items():
        n = path.read_text(encoding="utf-8").count("\n\n") + 1
        print(f"{name:8s} {n:5d} chunks  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
