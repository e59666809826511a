"""Snapshots of θ for joiners: checkpoint files served as they are (DESIGN §7, §8).

A snapshot is a checkpoint file (``checkpoint.py``): the trainable tensors,
the version vector they reflect and a payload hash, written atomically by the
trainer thread. Serving the newest file rather than live tensors gives a
consistent (θ, vv) pair without stopping training, and a transfer that breaks
can resume because the bytes of a file do not change.

``SnapshotFiles`` finds the newest checkpoint, reads its vector from the
header only, and caches the sha256 of the whole file (one pass per file).
``install_snapshot`` verifies a received file, moves it into the checkpoint
directory and loads it into an engine (with its pool accumulators in pool
mode); it must run on the trainer thread.

In pool mode a joiner needs no θ at all (DESIGN §5): ``pool_from_codes``
computes the exact accumulators of a set of updates from their codes alone
(integer sums, no regeneration), which lets a joiner check a peer's K
accumulators against the code log it fetched before ``Engine.join_from_pool``.
This module knows nothing of the network or of who asked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

from seedfl.core.pool import PoolAccumulators
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import FORMATS, load_checkpoint
from seedfl.training.statedir import restore_checkpoint

if TYPE_CHECKING:
    from seedfl.training.engine import Engine

_HASH_BLOCK = 4 << 20


@dataclass(frozen=True)
class SnapshotFile:
    path: Path
    vv: VersionVector
    size: int
    sha256: bytes


def file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.digest()


def read_vv(path: Path) -> VersionVector:
    """The version vector in a checkpoint's header, without loading tensors."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{path.name} is not a seedfl checkpoint")
    return VersionVector.from_dict(json.loads(meta["vv"]))


class SnapshotFiles:
    """The newest checkpoint of a directory, described for serving."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[tuple[str, int, int], SnapshotFile] = {}

    def newest(self) -> SnapshotFile | None:
        """Blocking (hashes a new file once): call it off the event loop."""
        found = sorted(
            ((int(p.name[5:-12]), p) for p in self.directory.glob("ckpt-*.safetensors")
             if p.name[5:-12].isdigit()), reverse=True)
        for _, path in found:
            try:
                st = path.stat()
                key = (path.name, st.st_size, st.st_mtime_ns)
                hit = self._cache.get(key)
                if hit is None:
                    hit = SnapshotFile(path, read_vv(path), st.st_size, file_sha256(path))
                    self._cache = {key: hit}
                return hit
            except (OSError, ValueError, KeyError):  # pruned or torn meanwhile: next one
                continue
        return None


def install_snapshot(engine: Engine, received: Path, checkpoint_dir: Path) -> VersionVector:
    """Load a verified snapshot file into ``engine``, then move it into ``checkpoint_dir``.

    Runs on the trainer thread. The file is renamed to ``ckpt-<total>`` so that
    a restart recovers from it (and until then, from the log, which the caller
    filled first). Returns the vector now applied. Raises ValueError, leaving
    the engine as it was, if the file does not load, would take the engine
    backwards, or lacks what this swarm needs (pool accumulators in pool mode).
    """
    try:
        ckpt = load_checkpoint(received)
    except Exception as exc:
        raise ValueError(f"the snapshot does not load: {exc}") from exc
    vv = ckpt.vv
    if not vv.dominates(engine.applied_vector()):
        raise ValueError("the snapshot lacks updates this node has applied")
    why = restore_checkpoint(engine, ckpt)
    if why:
        raise ValueError(f"the snapshot cannot be used: {why}")
    os.replace(received, Path(checkpoint_dir) / f"ckpt-{vv.total()}.safetensors")
    fd = os.open(checkpoint_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return vv


def pool_from_codes(engine: Engine, batches: Iterable[UpdateBatch]) -> PoolAccumulators:
    """Exact accumulators of exactly the updates in ``batches`` (any order).

    Touches no weights and none of the engine's state (reads its config,
    codec and learning rate only), so any thread may call it. Raises
    ValueError when the engine has no pool, or a batch's slots do not match
    the swarm's pool sampling.
    """
    if engine.pool is None:
        raise ValueError("this swarm does not use a seed pool")
    importance = engine.cfg.zo.pool_sampling == "importance"
    acc = PoolAccumulators(engine.pool.size, engine.codec, engine.lr)
    for b in batches:
        if (b.slots is not None) != importance:
            raise ValueError(f"batch of {b.origin.hex()[:8]} does not match the pool sampling")
        if b.slots is not None:
            slots = [engine.slot_of(b.origin, 0, k) for k in b.slots]
        else:
            slots = [engine.slot_of(b.origin, q, None) for q in range(b.first_seq, b.end_seq)]
        acc.add_batch(b.first_seq, b.codes, slots)
    return acc
