"""The per-node metrics history: ``<state>/history.jsonl``, one JSON object a line.

A running node appends a ``"kind": "train"`` row every ``every`` seconds (5 by
default) and once more when it stops::

    {"kind": "train", "t": <unix time>, "uptime_s": ..., "own_seq": ...,
     "applied_total": ..., "loss_ema": <float or null>, "steps_per_s": ...,
     "bytes_out": ..., "bytes_in": ..., "payload_bytes_out": ...,
     "payload_bytes_in": ..., "peers_alive": ...}

``seedfl eval`` appends a ``"kind": "eval"`` row (t, applied_total, loss,
accuracy or null, examples, data). ``seedfl plot`` reads both kinds.

Bounded growth: when the file passes ``max_bytes`` (2 MiB, about 9,000 rows
of ~220 bytes or 13 hours at 5 s) it is compacted in place: every eval row
is kept, every other train row is dropped (the first and the newest stay),
and the result replaces the file atomically. The curve keeps its whole time
span at half the resolution, so a week-long run still plots from its first
step. Appends are single
``write`` calls of one line in append mode, so the node and an ``eval`` run
may write concurrently; a row appended during a compaction can be lost.
Readers skip lines that are not valid JSON (a torn last line after a crash).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seedfl.core.status import NodeStatus

log = logging.getLogger("seedfl.observe.history")

HISTORY_FILE = "history.jsonl"
MAX_BYTES = 2 << 20
EVERY_S = 5.0


def train_row(status: NodeStatus) -> dict[str, Any]:
    """The history row for one status value."""
    return {
        "kind": "train", "t": round(time.time(), 3),
        "uptime_s": round(status.uptime_s, 3),
        "own_seq": status.own_seq, "applied_total": status.applied_total,
        "loss_ema": status.loss_ema, "steps_per_s": round(status.steps_per_s, 4),
        "bytes_out": status.total_bytes_out, "bytes_in": status.total_bytes_in,
        "payload_bytes_out": status.payload_bytes_out,
        "payload_bytes_in": status.payload_bytes_in,
        "peers_alive": status.alive_peers,
    }


def eval_row(result: dict[str, Any], data: str | None = None) -> dict[str, Any]:
    """The history row for one ``seedfl eval`` result (loss, accuracy, examples, ...)."""
    return {"kind": "eval", "t": round(time.time(), 3),
            "applied_total": result.get("updates_applied"), "loss": result.get("loss"),
            "accuracy": result.get("accuracy"), "examples": result.get("examples"),
            "data": data}


def append_row(path: Path, row: dict[str, Any], max_bytes: int = MAX_BYTES) -> None:
    """Append one row; compact the file first if it has grown past ``max_bytes``."""
    line = (json.dumps(row, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size + len(line) > max_bytes:
        compact(path, max_bytes)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def compact(path: Path, max_bytes: int = MAX_BYTES) -> None:
    """Keep every eval row and every other train row (the first and last kept).

    If that still leaves more than 3/4 of ``max_bytes`` (a file of mostly
    eval rows), every other row of either kind goes too, so compactions stay
    rare whatever the mix of rows.
    """
    rows = read_rows(path)
    for kinds in (("train",), ("train", "eval")):
        picked = [i for i, r in enumerate(rows) if r.get("kind", "train") in kinds]
        drop = set(picked[1:-1:2])  # the run's first and newest rows always stay
        rows = [r for i, r in enumerate(rows) if i not in drop]
        lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in rows]
        if sum(len(x) for x in lines) <= max_bytes * 3 // 4:
            break
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All well-formed rows in file order; a missing file reads as no rows."""
    rows: list[dict[str, Any]] = []
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except FileNotFoundError:
        return rows
    with fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


class HistoryRecorder:
    """The node's hook: ``run()`` appends a row every ``every`` s, ``record()`` one now."""

    def __init__(self, state_path: Path, status: Callable[[], NodeStatus],
                 every: float = EVERY_S, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(state_path) / HISTORY_FILE
        self.status = status
        self.every = every
        self.max_bytes = max_bytes
        self._warned = False

    def record(self) -> None:
        try:
            append_row(self.path, train_row(self.status()), self.max_bytes)
        except OSError as exc:  # history is a convenience; never stop training for it
            if not self._warned:
                log.warning("cannot write %s: %s", self.path, exc)
                self._warned = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.record()
