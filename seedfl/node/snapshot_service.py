"""``SnapshotService``: the serving side of the snapshot catch-up (DESIGN §7).

It answers the Snapshot RPC from the node's newest checkpoint file, asking
the trainer for a fresh one when the newest is too far behind what was asked,
at most once per ``CHECKPOINT_ON_DEMAND_S``. The joining side is
``catchup.py``; the chunking and hashing are ``net/snapshot.py``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seedfl.net.snapshot import SnapshotChunk, SnapshotRequest, SnapshotUnavailable, serve_file
from seedfl.training.snapshot import SnapshotFiles

if TYPE_CHECKING:
    from seedfl.training.engine import Engine
    from seedfl.training.trainer import TrainerThread

__all__ = ["CHECKPOINT_ON_DEMAND_S", "SnapshotService"]

_SNAPSHOT_SLACK = 256  # serve an older checkpoint if at most this many updates behind
_TRAINER_CALL = 120.0
# At most one checkpoint written on a Snapshot request per this many seconds;
# other requests get the newest checkpoint there is (the joiner fetches the rest).
CHECKPOINT_ON_DEMAND_S = 30.0


class SnapshotService:
    """Serves the Snapshot RPC from the node's newest checkpoint file."""

    def __init__(self, checkpoint_dir: Path, engine: Engine, trainer: TrainerThread) -> None:
        self.engine, self.trainer = engine, trainer
        self.files = SnapshotFiles(checkpoint_dir)
        self.served = 0
        self.forced_at = -math.inf  # monotonic time of the last on-demand checkpoint
        self.refused_checkpoints = 0  # requests that would have forced one too many

    async def snapshot(self, request: SnapshotRequest) -> AsyncIterator[SnapshotChunk]:
        engine, loop = self.engine, asyncio.get_running_loop()
        snap = await loop.run_in_executor(None, self.files.newest)
        behind = snap is None or not snap.vv.dominates(request.at_least) or (
            request.resume_from == 0
            and engine.applied_vector().total() - snap.vv.total() > _SNAPSHOT_SLACK)
        # A fresh checkpoint costs a write of θ: only when it can satisfy the
        # request (our applied state covers at_least: an unknown or future vector
        # is refused at once) and at most once per CHECKPOINT_ON_DEMAND_S, so
        # repeated calls cannot make a node write its model again and again.
        can_help = engine.applied_vector().dominates(request.at_least)
        now = time.monotonic()
        if behind and can_help and now - self.forced_at >= CHECKPOINT_ON_DEMAND_S:
            self.forced_at = now
            fut: Any = self.trainer.call(self.trainer.checkpoint)
            await asyncio.wait_for(asyncio.wrap_future(fut), _TRAINER_CALL)
            snap = await loop.run_in_executor(None, self.files.newest)
        elif behind:
            self.refused_checkpoints += 1
        if snap is None or not snap.vv.dominates(request.at_least):
            raise SnapshotUnavailable("this node's state does not cover the vector asked for")
        fd = os.open(snap.path, os.O_RDONLY)  # pins the bytes even if the file is pruned
        try:
            async def read(offset: int, n: int) -> bytes:
                return await loop.run_in_executor(None, os.pread, fd, n, offset)

            async for chunk in serve_file(snap.path, snap.size, snap.vv, snap.sha256, request,
                                          read):
                yield chunk
            self.served += 1
        finally:
            os.close(fd)
