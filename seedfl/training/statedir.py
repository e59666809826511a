"""A node's state directory: identity, config copy, update log, checkpoints.

Layout::

    <state>/node.json         node id (16 random bytes, hex), name, created
    <state>/swarm.toml        the resolved swarm config this directory belongs to
    <state>/log/              append-only update log segments (core/log.py)
    <state>/checkpoints/      ckpt-<n>.safetensors, last two kept (checkpoint.py)
    <state>/node.lock         held by the running node (dirlock.py)

Opening a directory that belongs to another swarm (different config
fingerprint) is refused: mixing two swarms' logs would silently corrupt both.
``recover()`` rebuilds an engine's weights from the newest valid checkpoint and
the log beyond it, and reports what it did. In pool mode (DESIGN §5) a
checkpoint carries the exact accumulators as its ``pool`` blob and they are
restored with θ before the tail is replayed; a pool-mode checkpoint without
them (written before they were kept) is not used, and the whole log is
replayed from θ₀ instead. The tail is replayed through ``Engine.apply_many``
in large groups, so in pool mode it costs at most one regeneration per
touched slot per group. This module does no networking.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seedfl.core.config import SwarmConfig, dump_config, load_config
from seedfl.core.errors import UserError
from seedfl.core.log import UpdateLog
from seedfl.core.pool import PoolAccumulators, PoolStateError
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import Checkpoint, load_latest
from seedfl.training.dirlock import DirLock, DirLocked

if TYPE_CHECKING:
    from seedfl.training.engine import Engine

_log = logging.getLogger(__name__)

POOL_BLOB = "pool"  # checkpoint blob: Engine.pool_state() at the checkpoint's vector
REPLAY_GROUP = 65_536  # updates per apply_many call while replaying the log


class StateDirError(UserError, RuntimeError):
    """The state directory cannot be used; the message says why and what to do."""


@dataclass
class Recovery:
    checkpoint_updates: int
    replayed_updates: int
    log_updates: int
    truncated_bytes: int
    seconds: float

    def describe(self) -> str:
        return (
            f"checkpoint at {self.checkpoint_updates} updates, replayed {self.replayed_updates} "
            f"from the log ({self.log_updates} logged, torn tail {self.truncated_bytes} bytes) "
            f"in {self.seconds:.2f}s"
        )


def default_state_dir() -> Path:
    env = os.environ.get("SEEDFL_STATE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("seedfl")) / "node"


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.log_dir = self.path / "log"
        self.checkpoint_dir = self.path / "checkpoints"
        self.identity_file = self.path / "node.json"
        self.config_file = self.path / "swarm.toml"
        self.lock = DirLock(self.path)

    def exists(self) -> bool:
        return self.identity_file.exists()

    def open(self, cfg: SwarmConfig | None, name: str | None = None) -> tuple[bytes, str]:
        """Create or open; return (node id, node name). Refuses another swarm's directory."""
        if cfg is not None and self.config_file.exists():
            theirs = load_config(self.config_file)
            if theirs.fingerprint() != cfg.fingerprint():
                raise StateDirError(
                    f"{self.path} belongs to another swarm (config fingerprint "
                    f"{theirs.short_fingerprint()}, this config has {cfg.short_fingerprint()}); "
                    "use another --state-dir, or delete that directory to start over"
                )
        if self.identity_file.exists():
            ident = json.loads(self.identity_file.read_text())
            node_id = bytes.fromhex(ident["id"])
            node_name = name or ident.get("name") or socket.gethostname()
        else:
            if cfg is None:
                raise StateDirError(f"{self.path} is not a seedfl state directory (no node.json)")
            self.path.mkdir(parents=True, exist_ok=True)
            node_id = secrets.token_bytes(16)
            node_name = name or socket.gethostname()
            _atomic_write(self.identity_file, json.dumps(
                {"id": node_id.hex(), "name": node_name, "created": time.time()}, indent=1))
        if cfg is not None and not self.config_file.exists():
            _atomic_write(self.config_file, dump_config(cfg))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return node_id, node_name

    def open_node(self, cfg: SwarmConfig, name: str | None) -> tuple[bytes, str, int]:
        """Open for running a node: also bump and persist the incarnation.

        Peers treat a higher incarnation as a newer life of the same node, so a
        restarted node is not mistaken for the one that left or died. Takes the
        directory's lock first (released by ``close`` or by the process ending):
        a second node on the same directory is refused with the holder's pid.
        """
        try:
            self.lock.acquire()
        except DirLocked as exc:
            raise StateDirError(str(exc)) from None
        node_id, node_name = self.open(cfg, name)
        ident = json.loads(self.identity_file.read_text())
        ident["incarnation"] = int(ident.get("incarnation", 0)) + 1
        ident["name"] = node_name
        _atomic_write(self.identity_file, json.dumps(ident, indent=1))
        return node_id, node_name, ident["incarnation"]

    def close(self) -> None:
        """Release the directory for another node (idempotent)."""
        self.lock.release()

    def config(self) -> SwarmConfig:
        if not self.config_file.exists():
            raise StateDirError(f"{self.path} has no swarm.toml; is it a seedfl state directory?")
        return load_config(self.config_file)

    def open_log(self, fsync: str = "batch") -> UpdateLog:
        return UpdateLog(self.log_dir, fsync=fsync)


def restore_checkpoint(engine: Engine, ckpt: Checkpoint) -> str | None:
    """Load θ, the applied vector and (pool mode) the accumulators of ``ckpt``.

    Returns None when done, or why the checkpoint cannot be used, in which
    case the engine is untouched.
    """
    if engine.pool is not None:
        blob = ckpt.blobs.get(POOL_BLOB)
        if blob is None:
            return "it holds no seed-pool accumulators"
        scratch = PoolAccumulators(engine.pool.size, engine.codec, engine.lr)
        try:  # on a scratch copy first, so a bad blob changes nothing
            scratch.load_bytes(blob)
        except PoolStateError as exc:
            return f"its seed-pool accumulators are unusable: {exc}"
        # Exact accumulators count every update they hold; anything else (a
        # float32 snapshot form) could not be kept bit-identical with peers.
        if scratch.updates != ckpt.vv.total():
            return "its seed-pool accumulators do not cover its version vector exactly"
    engine.bundle.load_trainable(dict(zip(ckpt.names, ckpt.tensors, strict=True)))
    if engine.pool is not None:
        engine.load_pool_state(ckpt.blobs[POOL_BLOB])
    engine.applied = {o: n for o, n in ckpt.vv.items() if n > 0}
    return None


def replay_into(engine: Engine, batches: list[UpdateBatch]) -> int:
    """Apply what ``batches`` hold beyond the engine's applied vector, coalesced.

    Batches of an origin must follow each other (overlaps are skipped, a gap
    raises ValueError from the engine). Returns the number of updates applied.
    """
    ends = dict(engine.applied)
    group: list[UpdateBatch] = []
    size = replayed = 0
    for batch in batches:
        have = ends.get(batch.origin, 0)
        if batch.end_seq <= have:
            continue
        part = batch.slice(max(have, batch.first_seq), batch.end_seq)
        ends[batch.origin] = part.end_seq
        group.append(part)
        size += len(part)
        if size >= REPLAY_GROUP:
            engine.apply_many(group)
            replayed += size
            group, size = [], 0
    if group:
        engine.apply_many(group)
        replayed += size
    return replayed


def recover(engine: Engine, state: StateDir, log: UpdateLog) -> tuple[Recovery, list[UpdateBatch]]:
    """Load the newest valid checkpoint into the engine, replay the log beyond it.

    Returns the report and every logged batch (to seed the in-memory store).
    """
    t0 = time.perf_counter()
    ckpt = load_latest(state.checkpoint_dir)
    start = VersionVector()
    if ckpt is not None:
        why = restore_checkpoint(engine, ckpt)
        if why is None:
            start = ckpt.vv
        else:
            _log.warning("not using checkpoint %s (%s); replaying the whole log", ckpt.path.name,
                        why)
    logged = list(log.replay(None))
    replayed = replay_into(engine, logged)
    report = log.recovery
    return (
        Recovery(
            checkpoint_updates=start.total(),
            replayed_updates=replayed,
            log_updates=sum(len(b) for b in logged),
            truncated_bytes=report.truncated_bytes,
            seconds=time.perf_counter() - t0,
        ),
        logged,
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
