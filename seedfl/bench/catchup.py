"""Catch-up and recovery (DESIGN §7, §8): snapshot transfer rate and restart time.

``bench_catchup`` measures, in one run on this machine:

- snapshot: a random model of SmolLM2-135M's shape (``quick``: the tiny test
  model) is checkpointed, served by a real gRPC Peer server on loopback and
  fetched by ``receive_snapshot`` (chunked, hashed), then loaded into a
  second model. Reports bytes, seconds and MB/s of the transfer, the
  server's one-time file hash, and the load;
- recovery: a state directory with ``recovery_updates`` logged updates and a
  checkpoint every ``checkpoint_every`` is recovered with ``statedir.recover``;
  reports the total and the part spent replaying the tail beyond the newest
  checkpoint (the tiny model, so the fixed cost shows rather than replay).

It knows nothing of swarms; the server's handler serves one file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch

from seedfl.core.config import ModelConfig, parse_config
from seedfl.core.updates import UpdateBatch
from seedfl.net.connection import PeerConnection
from seedfl.net.door import Door, plain_initiator
from seedfl.net.servicer import PeerServicer, build_server
from seedfl.net.snapshot import SnapshotChunk, SnapshotRequest, receive_snapshot, serve_file
from seedfl.training.checkpoint import load_latest, save_checkpoint
from seedfl.training.engine import Engine
from seedfl.training.model import load_model, load_swarm_model
from seedfl.training.snapshot import SnapshotFiles
from seedfl.training.statedir import StateDir, recover
from seedfl.training.task import Task

_CONFIG = """
[model]
name = "seedfl:tiny"
[task]
type = "classification"
template = "{text} ="
verbalizer = { "0" = "x", "1" = "y" }
"""


class _OneFile(Door):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.files = SnapshotFiles(directory)
        self.hash_seconds = 0.0

    async def snapshot(self, request: SnapshotRequest) -> AsyncIterator[SnapshotChunk]:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        snap = await loop.run_in_executor(None, self.files.newest)
        self.hash_seconds = max(self.hash_seconds, time.perf_counter() - t0)
        assert snap is not None
        fd = os.open(snap.path, os.O_RDONLY)
        try:
            async def read(offset: int, n: int) -> bytes:
                return await loop.run_in_executor(None, os.pread, fd, n, offset)

            async for chunk in serve_file(snap.path, snap.size, snap.vv, snap.sha256, request,
                                          read):
                yield chunk
        finally:
            os.close(fd)


async def _transfer(src: Path, dest: Path, handler: _OneFile) -> tuple[float, int]:
    server = await build_server(PeerServicer(handler), "127.0.0.1:0")  # type: ignore[arg-type]
    conn = PeerConnection(f"127.0.0.1:{server.port}", initiate=lambda: plain_initiator(1))
    try:
        from seedfl.core.version_vector import VersionVector

        got = await receive_snapshot(conn.snapshot, VersionVector(), dest)
        return got.seconds, got.size
    finally:
        await conn.close()
        await server.stop(0.5)


def _snapshot(quick: bool, work: Path) -> dict[str, Any]:
    from seedfl.bench.models import SMOLLM2_SHAPE

    model = ModelConfig(name="seedfl:tiny") if quick else ModelConfig(
        name="seedfl:tiny", tiny=SMOLLM2_SHAPE)
    bundle = load_model(model)
    n_params = sum(p.numel() for p in bundle.params)
    from seedfl.core.version_vector import VersionVector

    src = work / "served"
    t0 = time.perf_counter()
    save_checkpoint(src, bundle.names, bundle.params, VersionVector({b"\x01" * 16: 1000}))
    save_s = time.perf_counter() - t0
    handler = _OneFile(src)
    (work / "got").mkdir()
    seconds, size = asyncio.run(_transfer(src, work / "got" / "ckpt-1000.safetensors", handler))
    t0 = time.perf_counter()
    ckpt = load_latest(work / "got")
    assert ckpt is not None
    bundle.load_trainable(dict(zip(ckpt.names, ckpt.tensors, strict=True)))
    load_s = time.perf_counter() - t0
    return {"params": n_params, "bytes": size, "transfer_seconds": seconds,
            "mb_per_s": size / seconds / 1e6, "server_hash_seconds": handler.hash_seconds,
            "checkpoint_write_seconds": save_s, "load_seconds": load_s}


def _recovery(updates: int, every: int, work: Path) -> dict[str, Any]:
    cfg = parse_config(_CONFIG)
    bundle = load_swarm_model(cfg)
    task = Task.from_config(cfg.task, bundle.tokenizer)
    state = StateDir(work / "state")
    node_id, _ = state.open(cfg)
    engine = Engine(cfg, bundle, task, [], node_id)
    log = state.open_log(fsync="never")
    code = engine.codec.encode(0.01, 0)[0]
    last = (updates // every) * every
    if last == updates:
        last -= every
    for seq in range(updates):
        batch = UpdateBatch(node_id, seq, bytes([code]))
        if seq < last:
            engine.applied[node_id] = seq + 1  # the checkpoint's θ is not what matters here
        log.append(batch)
    save_checkpoint(state.checkpoint_dir, bundle.names, bundle.params, engine.applied_vector())
    log.close()
    fresh = Engine(cfg, load_swarm_model(cfg), task, [], node_id)
    log = state.open_log()
    t0 = time.perf_counter()
    report, _ = recover(fresh, state, log)
    total = time.perf_counter() - t0
    log.close()
    tail_s = fresh.stats.apply_seconds
    return {"logged_updates": updates, "checkpoint_every": every,
            "replayed_tail": report.replayed_updates, "seconds": total,
            "tail_replay_seconds": tail_s, "seconds_without_tail": total - tail_s}


def bench_catchup(quick: bool = False, recovery_updates: int = 100_000,
                  checkpoint_every: int = 1000) -> dict[str, Any]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="seedfl-bench-catchup-") as tmp:
        work = Path(tmp)
        (work / "snap").mkdir()
        (work / "rec").mkdir()
        out = {"snapshot": _snapshot(quick, work / "snap"),
               "recovery": _recovery(10_000 if quick else recovery_updates, checkpoint_every,
                                     work / "rec")}
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(bench_catchup(quick="--quick" in sys.argv), indent=1))
