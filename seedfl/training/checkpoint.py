"""Checkpoints of θ with the version vector they reflect (DESIGN §8).

A checkpoint is one ``ckpt-<total updates>.safetensors`` file holding the
trainable tensors in canonical order, with metadata: the version vector and a
caller's ``extra`` dict as JSON, the canonical name order, and a sha256 of the
tensor payload. Opaque byte ``blobs`` the caller wants kept with θ at the same
vector (the seed-pool accumulators, DESIGN §5) ride along as uint8 tensors
named ``__blob__.<name>``, listed in the ``blobs`` metadata and covered by the
sha256; a file with blobs says ``seedfl-checkpoint/v2`` (older readers refuse
it by name rather than misread it), one without stays ``v1``.

A checkpoint is written to a temporary file in the same directory, fsynced,
renamed into place, and the directory is fsynced, so a crash at any moment
leaves either the old set of checkpoints or the new one. The newest two
are kept; a corrupt newest one falls back to the one before.

``load_latest`` returns the newest checkpoint that loads and whose hash
matches, and says which files it skipped and why. This module knows nothing
about models, the log, or what the tensors mean.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from seedfl.core.version_vector import VersionVector

log = logging.getLogger(__name__)

FORMAT = "seedfl-checkpoint/v1"
FORMAT_BLOBS = "seedfl-checkpoint/v2"
FORMATS = (FORMAT, FORMAT_BLOBS)
BLOB_PREFIX = "__blob__."
KEEP = 2
_NAME = re.compile(r"ckpt-(\d+)\.safetensors")


@dataclass
class Checkpoint:
    path: Path
    names: list[str]
    tensors: list[torch.Tensor]
    vv: VersionVector
    extra: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)


def payload_sha256(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of each tensor in order."""
    h = hashlib.sha256()
    for name, t in zip(names, tensors, strict=True):
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_checkpoint(
    directory: str | os.PathLike[str],
    names: Sequence[str],
    params: Sequence[torch.Tensor],
    vv: VersionVector,
    extra: Mapping[str, Any] | None = None,
    blobs: Mapping[str, bytes] | None = None,
) -> Path:
    """Write θ (and ``blobs``) atomically as ``ckpt-<vv.total()>.safetensors``; keep two."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    if len(names) != len(params) or len(set(names)) != len(names):
        raise ValueError("checkpoint names must be unique and match the tensors one to one")
    if any(n.startswith(BLOB_PREFIX) for n in names):
        raise ValueError(f"tensor names may not start with {BLOB_PREFIX!r}")
    # Copies on the CPU: safetensors refuses tensors that share storage, and the
    # caller's tensors keep changing after we return.
    tensors = [p.detach().to("cpu", copy=True).contiguous() for p in params]
    blob_names = sorted(blobs or {})
    keys = [*names, *(BLOB_PREFIX + b for b in blob_names)]
    tensors += [_blob_tensor((blobs or {})[b]) for b in blob_names]
    metadata = {
        "format": FORMAT_BLOBS if blob_names else FORMAT,
        "names": json.dumps(list(names)),
        "vv": json.dumps(vv.to_dict(), sort_keys=True),
        "extra": json.dumps(dict(extra or {}), sort_keys=True),
        "sha256": payload_sha256(keys, tensors),
    }
    if blob_names:
        metadata["blobs"] = json.dumps(blob_names)
    final = folder / f"ckpt-{vv.total()}.safetensors"
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    try:
        save_file(dict(zip(keys, tensors, strict=True)), str(tmp), metadata=metadata)
        _fsync_file(tmp)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(folder)
    _prune(folder, keep=KEEP)
    return final


def load_latest(directory: str | os.PathLike[str]) -> Checkpoint | None:
    """The newest valid checkpoint in ``directory``, or None when there is none."""
    skipped: list[tuple[Path, str]] = []
    for path in _checkpoints(Path(directory)):
        try:
            ckpt = load_checkpoint(path)
        except Exception as exc:  # any unreadable file is skipped, never fatal
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("skipping checkpoint %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        ckpt.skipped = skipped
        return ckpt
    return None


def load_checkpoint(path: Path) -> Checkpoint:
    """One checkpoint file, verified; raises (ValueError, OSError, ...) when unusable."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") not in FORMATS:
            raise ValueError(f"not a seedfl checkpoint (format {meta.get('format')!r})")
        names = json.loads(meta["names"])
        blob_names = json.loads(meta.get("blobs", "[]")) if meta["format"] == FORMAT_BLOBS else []
        keys = [*names, *(BLOB_PREFIX + b for b in blob_names)]
        if sorted(keys) != sorted(f.keys()):
            raise ValueError("tensor names do not match the recorded order")
        tensors = [f.get_tensor(n) for n in keys]
    digest = payload_sha256(keys, tensors)
    if digest != meta["sha256"]:
        raise ValueError(f"payload sha256 {digest[:12]} != recorded {meta['sha256'][:12]}")
    vv = VersionVector.from_dict(json.loads(meta["vv"]))
    extra = json.loads(meta["extra"])
    blobs = {b: t.numpy().tobytes() for b, t in zip(blob_names, tensors[len(names):],
                                                    strict=True)}
    return Checkpoint(path=path, names=names, tensors=tensors[:len(names)], vv=vv, extra=extra,
                      blobs=blobs)


def _blob_tensor(data: bytes) -> torch.Tensor:
    # frombuffer shares the (read-only) bytes; clone so safetensors owns a plain tensor.
    if not data:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def _checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, newest (most updates) first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def _prune(folder: Path, keep: int) -> None:
    for old in _checkpoints(folder)[keep:]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    # Temporary files left by a writer that was killed mid-way.
    for stale in folder.glob(".ckpt-*.tmp"):
        if not stale.name.endswith(f".{os.getpid()}.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Directories cannot be opened for fsync on Windows; the rename is still atomic.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
