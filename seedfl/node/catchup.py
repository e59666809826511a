"""Joining and rejoining: catch up with a peer before training (DESIGN §7, §8).

``CatchUp.run`` starts with the trainer paused and deliveries held (updates
still enter the store; the trainer is not handed them). It waits for the first
linked peer's Vector, then brings this node to that vector one of three ways:

- **replay**: fetch the missing code logs (one byte per update) with Fetch,
  then hand every stored update beyond what the engine applied to the trainer;
- **snapshot**: download the peer's newest checkpoint file (net/snapshot.py),
  fetch the code logs up to the snapshot's vector and beyond, append the part
  the snapshot covers to our log *before* installing the file (so a crash in
  between leaves a log that replays to the same state), install it on the
  trainer thread, then hand over the tail as in replay;
- **pool** (seed-pool swarms, engine that has applied nothing): rebuild θ from
  the peer's K accumulators (``pool_catchup``), then hand over the tail.

``auto`` takes the pool path whenever it is possible and at least K updates
are missing (K regenerations then beat replaying them). Otherwise it picks by
estimated seconds: replay costs regenerations × trainable parameters / the
replay rate this engine measured (or a probe on a scratch tensor), where
regenerations are the missing updates, or in pool mode at most K per drained
group; a snapshot costs its bytes / the link rate measured on its second
chunk. Only when replay looks slower than ``_PROBE_AFTER`` seconds is the
snapshot stream opened at all; if it looks slower still, it is dropped.
``catchup_state_bytes`` counts what the model state took on the wire: the
snapshot file, or the serialised accumulators (K·4 + 52 bytes).

Learning the peer's entry for our own origin before stepping is what keeps a
node whose log lost its tail (power cut) from reusing seqs. When no peer
answers within the wait, the node trains on what it has.

``SnapshotService`` answers the Snapshot RPC from the newest checkpoint,
asking the trainer for a fresh one when the newest is too far behind.
This module does not parse wire messages or touch tensors itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import torch

from seedfl.core.perturbation import add_direction_
from seedfl.core.version_vector import VersionVector
from seedfl.net.connection import PeerConnection
from seedfl.net.snapshot import (
    SnapshotChunk,
    SnapshotRequest,
    SnapshotUnavailable,
    receive_snapshot,
    serve_file,
)
from seedfl.node.pool_catchup import join_from_pool, pool_join_possible
from seedfl.swarm import messages as m
from seedfl.training.snapshot import SnapshotFiles, install_snapshot

if TYPE_CHECKING:
    from seedfl.node.runtime import NodeRuntime

log = logging.getLogger("seedfl.catchup")

_WAIT_STATIC = 20.0  # seconds to wait for a --peer before training alone
_WAIT_DISCOVERED = 5.0  # ... for an mDNS peer
_PROBE_AFTER = 2.0  # replay estimates below this never consider a snapshot
_FETCH_RANGE = 16_384  # updates per range asked in one Fetch (below the batch limit)
_FETCH_RANGES = 256
_RELEASE_BATCH = 1024
_SNAPSHOT_SLACK = 256  # serve an older checkpoint if at most this many updates behind
_TRAINER_CALL = 120.0
# Seconds without any progress toward the catch-up target before the joiner stops
# waiting and trains on what it has. Longer rides out a slow peer; shorter
# gets a joiner that was lied to (ranges claimed, never served) training sooner.
STALL_AFTER_S = 30.0
# At most one checkpoint written on a Snapshot request per this many seconds;
# other requests get the newest checkpoint there is (the joiner fetches the rest).
CHECKPOINT_ON_DEMAND_S = 30.0


class CatchUp:
    def __init__(self, node: NodeRuntime) -> None:
        self.node = node
        self.mode = node.options.catch_up
        self.state = "waiting"
        self.progress = 0.0
        self.holding = True
        self.logged = node.store.version_vector()  # what our own log holds
        self.stats: dict[str, float] = {"fetched_updates": 0.0}
        self.method = "none"

    # -- the whole sequence --------------------------------------------------------
    async def run(self) -> None:
        node = self.node
        t0 = time.perf_counter()
        try:
            peer = await self._first_peer()
            if peer is not None:
                node.phase = "syncing"
                await self._catch_up(*peer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # gossip repairs what is left; say so
            log.warning("catch-up incomplete (%s: %s); training on what we have",
                        type(exc).__name__, exc)
        finally:
            self._release()
        self.stats["seconds"] = time.perf_counter() - t0
        self.state, self.progress = "done", 1.0
        node.trainer.paused.clear()
        node.phase = "training" if node.engine.can_train() else "relaying"

    async def _first_peer(self) -> tuple[bytes, VersionVector] | None:
        node = self.node
        wait = _WAIT_STATIC if node.options.peers else _WAIT_DISCOVERED
        end = time.monotonic() + wait
        while time.monotonic() < end:
            heard = [(pid, r.vector) for pid, r in node.swarm.gossip.peers.items()
                     if r.vector is not None]
            if heard:
                return max(heard, key=lambda p: p[1].total())
            await asyncio.sleep(0.05)
        log.info("no peer answered within %.0fs; training on what this node has", wait)
        return None

    async def _catch_up(self, peer_id: bytes, theirs: VersionVector) -> None:
        node = self.node
        address = node.mesh.peer_address(peer_id)
        if address is None:
            return
        applied = node.engine.applied_vector()
        target = theirs.merged(applied)
        missing = sum(end - start for _, start, end in applied.missing_from(target))
        self.stats.update(missing_updates=float(missing), start_total=float(applied.total()),
                          target_total=float(target.total()))
        if missing == 0:
            return
        conn = node.mesh.connection(address)
        try:
            pooled = None
            if pool_join_possible(node) and (self.mode == "pool" or (
                    self.mode == "auto" and missing >= self._pool_size())):
                pooled = await join_from_pool(self, conn)
                if pooled is not None:
                    target = target.merged(pooled)
            if pooled is None:
                replay_s = self._regenerations(missing) * self._n_params() / \
                    await self._replay_rate()
                self.stats["replay_estimate_s"] = replay_s
                if self.mode == "snapshot" or (self.mode == "auto" and replay_s > _PROBE_AFTER):
                    got = await self._snapshot(conn, applied, replay_s)
                    if got is not None:
                        target = target.merged(got)
            self.state, self.progress = "replay", 0.0
            await self.fetch_codes(conn, target)
        finally:
            await conn.close()
        self._release()
        if self.method == "none":
            self.method = "replay"
        await self._await_applied(target)

    # -- pieces --------------------------------------------------------------------
    def _n_params(self) -> int:
        return sum(p.numel() for p in self.node.bundle.params)

    def _pool_size(self) -> int:
        pool = self.node.engine.pool
        return pool.size if pool is not None else 0

    def _regenerations(self, missing: int) -> int:
        """Directions to regenerate to replay ``missing`` updates (coalesced in pool mode)."""
        k = self._pool_size()
        if not k:
            return missing
        groups = -(-missing // self.node.trainer.options.drain_updates)
        return min(missing, k * groups)

    async def _replay_rate(self) -> float:
        """Parameters per second this node applies updates at (measured or probed)."""
        st = self.node.engine.stats
        if st.applied >= 8 and st.apply_seconds > 0:
            rate = st.applied * self._n_params() / st.apply_seconds
        else:
            rate = await asyncio.get_running_loop().run_in_executor(None, _probe_rate,
                                                                    self._n_params())
        self.stats["replay_params_per_s"] = rate
        return rate

    async def _snapshot(self, conn: PeerConnection, applied: VersionVector,
                        replay_s: float) -> VersionVector | None:
        node = self.node
        self.state = "snapshot"
        dest = node.state.checkpoint_dir / ".incoming-snapshot.part"
        marks: list[float] = []

        def on_chunk(chunk: SnapshotChunk) -> bool:
            marks.append(time.perf_counter())
            self.progress = (chunk.index + 1) / chunk.total
            if len(marks) == 2:
                rate = len(chunk.data) / max(marks[1] - marks[0], 1e-6)
                self.stats["link_bytes_per_s"] = rate
                snap_s = chunk.total * len(chunk.data) / rate
                self.stats["snapshot_estimate_s"] = snap_s
                if self.mode == "auto" and snap_s >= replay_s:
                    return False
            return True

        try:
            got = await receive_snapshot(conn.snapshot, applied, dest, on_chunk=on_chunk)
        except SnapshotUnavailable as exc:
            log.info("peer has no snapshot for us (%s); replaying instead", exc)
            return None
        if not got.complete:
            with contextlib.suppress(OSError):
                dest.unlink()
            return None
        self.stats.update(snapshot_bytes=float(got.size), state_bytes=float(got.size),
                          snapshot_seconds=got.seconds,
                          snapshot_mb_per_s=got.size / max(got.seconds, 1e-9) / 1e6)
        # The codes the snapshot covers go to the log first, then the file.
        await self.fetch_codes(conn, got.vv)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.log_prefix, got.vv)
        fut = node.trainer.call(lambda: install_snapshot(node.engine, dest,
                                                         node.state.checkpoint_dir))
        await asyncio.wait_for(asyncio.wrap_future(fut), _TRAINER_CALL)
        self.method = "snapshot"
        log.info("installed a snapshot at %d updates (%.1f MB in %.2fs)", got.vv.total(),
                 got.size / 1e6, got.seconds)
        return got.vv

    def log_prefix(self, upto: VersionVector) -> None:
        store, update_log = self.node.store, self.node.log
        for origin, end in upto.items():
            start = self.logged.get(origin)
            for lo in range(start, end, _FETCH_RANGE):
                update_log.append(store.get_range(origin, lo, min(lo + _FETCH_RANGE, end)))
        update_log.flush()
        self.logged = self.logged.merged(upto)

    async def fetch_codes(self, conn: PeerConnection, upto: VersionVector) -> None:
        """Fill the store up to ``upto`` from the peer (not delivered: we hold)."""
        node = self.node
        gossip = node.swarm.gossip
        for _ in range(4):  # a peer may not hold everything yet; what is left, gossip pulls
            ranges = [(o, lo, min(lo + _FETCH_RANGE, end))
                      for o, start, end in node.store.version_vector().missing_from(upto)
                      for lo in range(start, end, _FETCH_RANGE)]
            if not ranges:
                return
            for i in range(0, len(ranges), _FETCH_RANGES):
                got = 0
                want = m.Want(tuple(ranges[i:i + _FETCH_RANGES]))
                async for batch in conn.fetch(want):
                    # The gossip's inbound path: validation, caps and counters as for pushes.
                    got += sum(len(r) for r in gossip.on_fetched(batch, want, time.monotonic()))
                self.stats["fetched_updates"] = self.stats.get("fetched_updates", 0.0) + got

    def _release(self) -> None:
        """Hand the trainer every stored update beyond what it applied; stop holding."""
        if not self.holding:
            return
        node = self.node
        applied = node.engine.applied_vector()
        for origin, start, end in applied.missing_from(node.store.version_vector()):
            for lo in range(start, end, _RELEASE_BATCH):
                node.trainer.submit(node.store.get_range(origin, lo,
                                                         min(lo + _RELEASE_BATCH, end)))
        self.holding = False

    async def _await_applied(self, target: VersionVector) -> None:
        """Wait until the trainer applied ``target``, or until the part of it this
        node holds has been applied and nothing more of it arrives for
        STALL_AFTER_S: a peer that claimed ranges it never serves must not keep
        the trainer paused. Then train on what we have (gossip pulls the rest
        from anyone) and say so: ``catchup_stalled_missing`` in status."""
        node = self.node
        start = node.engine.applied_vector().total()
        span = max(1, target.total() - start)
        reached, moved_at = -1, time.monotonic()
        while node.trainer.error is None:
            applied = node.engine.applied_vector()
            self.progress = min(1.0, (applied.total() - start) / span)
            if applied.dominates(target) or not node.trainer.is_alive():
                return
            # Only progress toward the target counts: peers' fresh updates keep
            # the applied total moving even when the catch-up itself is stuck.
            toward = sum(min(applied.get(o), n) for o, n in target.items())
            now = time.monotonic()
            if toward != reached:
                reached, moved_at = toward, now
            elif now - moved_at > STALL_AFTER_S:
                short = sum(e - s for _, s, e in applied.missing_from(target))
                self.stats["stalled_missing"] = float(short)
                log.warning("catch-up stalled: %d claimed updates never arrived within "
                            "%.0fs; training on what we have (gossip pulls the rest)",
                            short, STALL_AFTER_S)
                return
            await asyncio.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        out = {f"catchup_{k}": v for k, v in self.stats.items()}
        for method in ("snapshot", "replay", "pool"):
            out[f"catchup_by_{method}"] = float(self.method == method)
        return out


def _probe_rate(n_params: int) -> float:
    """Parameters per second of one direction add, on a scratch tensor."""
    scratch = torch.zeros(max(1, min(n_params, 1 << 20)))
    best = float("inf")
    for i in range(3):
        t0 = time.perf_counter()
        add_direction_(scratch, 12345, i, 1e-3)
        best = min(best, time.perf_counter() - t0)
    return scratch.numel() / max(best, 1e-9)


class SnapshotService:
    """Serves the Snapshot RPC from the node's newest checkpoint file."""

    def __init__(self, node: NodeRuntime) -> None:
        self.node = node
        self.files = SnapshotFiles(node.state.checkpoint_dir)
        self.served = 0
        self.forced_at = -math.inf  # monotonic time of the last on-demand checkpoint
        self.refused_checkpoints = 0  # requests that would have forced one too many

    async def snapshot(self, request: SnapshotRequest) -> AsyncIterator[SnapshotChunk]:
        node, loop = self.node, asyncio.get_running_loop()
        snap = await loop.run_in_executor(None, self.files.newest)
        behind = snap is None or not snap.vv.dominates(request.at_least) or (
            request.resume_from == 0
            and node.engine.applied_vector().total() - snap.vv.total() > _SNAPSHOT_SLACK)
        # A fresh checkpoint costs a write of θ: only when it can satisfy the
        # request (our applied state covers at_least: an unknown or future vector
        # is refused at once) and at most once per CHECKPOINT_ON_DEMAND_S, so
        # repeated calls cannot make a node write its model again and again.
        can_help = node.engine.applied_vector().dominates(request.at_least)
        now = time.monotonic()
        if behind and can_help and now - self.forced_at >= CHECKPOINT_ON_DEMAND_S:
            self.forced_at = now
            fut: Any = node.trainer.call(node.trainer.checkpoint)
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
