"""A node's state directory: identity, config copy, update log, checkpoints.

Layout::

    <state>/node.json         node id (16 random bytes, hex), name, created
    <state>/swarm.toml        the resolved swarm config this directory belongs to
    <state>/log/              append-only update log segments (core/log.py)
    <state>/checkpoints/      ckpt-<n>.safetensors, last two kept (checkpoint.py)

Opening a directory that belongs to another swarm (different config
fingerprint) is refused: mixing two swarms' logs would silently corrupt both.
``recover()`` rebuilds an engine's weights from the newest valid checkpoint and
the log beyond it, and reports what it did. This module does no networking.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seedfl.core.config import SwarmConfig, dump_config, load_config
from seedfl.core.log import UpdateLog
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import load_latest

if TYPE_CHECKING:
    from seedfl.training.engine import Engine


class StateDirError(RuntimeError):
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
        restarted node is not mistaken for the one that left or died.
        """
        node_id, node_name = self.open(cfg, name)
        ident = json.loads(self.identity_file.read_text())
        ident["incarnation"] = int(ident.get("incarnation", 0)) + 1
        ident["name"] = node_name
        _atomic_write(self.identity_file, json.dumps(ident, indent=1))
        return node_id, node_name, ident["incarnation"]

    def config(self) -> SwarmConfig:
        if not self.config_file.exists():
            raise StateDirError(f"{self.path} has no swarm.toml; is it a seedfl state directory?")
        return load_config(self.config_file)

    def open_log(self, fsync: str = "batch") -> UpdateLog:
        return UpdateLog(self.log_dir, fsync=fsync)


def recover(engine: Engine, state: StateDir, log: UpdateLog) -> tuple[Recovery, list[UpdateBatch]]:
    """Load the newest valid checkpoint into the engine, replay the log beyond it.

    Returns the report and every logged batch (to seed the in-memory store).
    """
    t0 = time.perf_counter()
    ckpt = load_latest(state.checkpoint_dir)
    start = VersionVector()
    if ckpt is not None:
        engine.bundle.load_trainable(dict(zip(ckpt.names, ckpt.tensors, strict=True)))
        engine.applied = {o: n for o, n in ckpt.vv.items()}
        start = ckpt.vv
    logged = list(log.replay(None))
    replayed = 0
    for batch in logged:
        have = engine.applied.get(batch.origin, 0)
        if batch.end_seq <= have:
            continue
        part = batch.slice(max(have, batch.first_seq), batch.end_seq)
        engine.apply(part)
        replayed += len(part)
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
