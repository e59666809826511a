"""Snapshots of θ for joiners: checkpoint files served as they are (DESIGN §7, §8).

A snapshot is a checkpoint file (``checkpoint.py``): the trainable tensors,
the version vector they reflect and a payload hash, written atomically by the
trainer thread. Serving the newest file rather than live tensors gives a
consistent (θ, vv) pair without stopping training, and a transfer that breaks
can resume because the bytes of a file do not change.

``SnapshotFiles`` finds the newest checkpoint, reads its vector from the
header only, and caches the sha256 of the whole file (one pass per file).
``install_snapshot`` verifies a received file, moves it into the checkpoint
directory and loads it into an engine; it must run on the trainer thread.
This module knows nothing of the network or of who asked.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import FORMAT, load_latest

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
    if meta.get("format") != FORMAT:
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
    """Move a verified snapshot file into ``checkpoint_dir`` and load it into ``engine``.

    Runs on the trainer thread. The file is renamed to ``ckpt-<total>`` so that
    a restart recovers from it; its payload hash is checked on load. Returns
    the vector now applied. Raises ValueError if it does not load or would
    take the engine backwards.
    """
    vv = read_vv(received)
    if not vv.dominates(engine.applied_vector()):
        raise ValueError("the snapshot lacks updates this node has applied")
    final = Path(checkpoint_dir) / f"ckpt-{vv.total()}.safetensors"
    os.replace(received, final)
    fd = os.open(checkpoint_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    ckpt = load_latest(checkpoint_dir)
    if ckpt is None or ckpt.vv != vv:
        raise ValueError("the installed snapshot did not load back")
    engine.bundle.load_trainable(dict(zip(ckpt.names, ckpt.tensors, strict=True)))
    engine.applied = {o: n for o, n in vv.items()}
    return vv
