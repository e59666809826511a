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

Which way is ``catchup_plan.plan_catchup``'s choice (pure, unit-tested):
``auto`` takes the pool path whenever it is possible and at least K updates
are missing; otherwise it compares estimated seconds: replay costs
regenerations × trainable parameters / the replay rate this engine measured
(or a probe on a scratch tensor); a snapshot costs its bytes / the link rate
measured on its second chunk (``keep_snapshot``).

The first peer is the one whose vector is largest. If it breaks off, or
claimed ranges it does not serve (no progress for ``STALL_AFTER_S``), the
other linked peers holding some of what is missing are asked in turn
(``order_peers``), each under the same stall deadline; after the last, the
node trains on what it has and gossip pulls the rest from anyone.
``catchup_state_bytes`` counts what the model state took on the wire: the
snapshot file, or the serialised accumulators (K·4 + 52 bytes).

Learning the peer's entry for our own origin before stepping is what keeps a
node whose log lost its tail (power cut) from reusing seqs. When no peer
answers within the wait, the node trains on what it has.

This module does not parse wire messages or touch tensors itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import grpc
import torch

from seedfl.core.perturbation import add_direction_
from seedfl.core.version_vector import VersionVector
from seedfl.net.connection import PeerConnection
from seedfl.net.convert import ConversionError
from seedfl.net.snapshot import (
    SnapshotChunk,
    SnapshotUnavailable,
    receive_snapshot,
)
from seedfl.node.catchup_plan import (
    CatchupPlan,
    keep_snapshot,
    order_peers,
    plan_catchup,
    regenerations,
)
from seedfl.node.pool_catchup import join_from_pool, pool_join_possible
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import HandshakeRefused
from seedfl.training.snapshot import install_snapshot

if TYPE_CHECKING:
    from seedfl.node.ports import CatchUpHost

log = logging.getLogger("seedfl.catchup")

# What a peer that goes away or misbehaves mid-catch-up raises (ConnectionClosed
# is an OSError); anything else is a bug here and propagates.
PEER_FAILURES = (OSError, TimeoutError, grpc.RpcError, ConversionError, HandshakeRefused,
                 SnapshotUnavailable)

_WAIT_STATIC = 20.0  # seconds to wait for a --peer before training alone
_WAIT_DISCOVERED = 5.0  # ... for an mDNS peer
_FETCH_RANGE = 16_384  # updates per range asked in one Fetch (below the batch limit)
_FETCH_RANGES = 256
_RELEASE_BATCH = 1024
_TRAINER_CALL = 120.0
# Seconds without any progress toward the catch-up target before the joiner stops
# waiting and trains on what it has. Longer rides out a slow peer; shorter
# gets a joiner that was lied to (ranges claimed, never served) training sooner.
STALL_AFTER_S = 30.0


class CatchUp:
    def __init__(self, node: CatchUpHost) -> None:
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
        applied = node.engine.applied_vector()
        target = theirs.merged(applied)
        missing = sum(end - start for _, start, end in applied.missing_from(target))
        self.stats.update(missing_updates=float(missing), start_total=float(applied.total()),
                          target_total=float(target.total()))
        if missing == 0:
            return
        if node.mesh.peer_address(peer_id) is None:  # it left before we could ask it
            self._release()
            await self._ask_others(peer_id, target)
            return
        try:
            target = await self._from_first(peer_id, applied, target, missing)
        except PEER_FAILURES as exc:
            # The chosen peer went away or broke off: what it did not serve,
            # the next peer is asked for below.
            log.warning("catch-up from the first peer broke off (%s: %s); asking another",
                        type(exc).__name__, exc)
            self.stats["first_peer_failed"] = 1.0
        self._release()
        if self.method == "none":
            self.method = "replay"
        if not await self._await_applied(target):
            await self._ask_others(peer_id, target)

    async def _from_first(self, peer_id: bytes, applied: VersionVector, target: VersionVector,
                          missing: int) -> VersionVector:
        """Carry out the plan against the first peer; returns the target, grown
        by what a pool join or snapshot brought."""
        node = self.node
        address = node.mesh.peer_address(peer_id)
        assert address is not None  # _catch_up checked
        pool_size = self._pool_size()
        n_params = self._n_params()
        regens = regenerations(missing, pool_size, node.trainer.options.drain_updates)
        rate = await self._replay_rate()

        def plan(pool_possible: bool) -> CatchupPlan:
            return plan_catchup(self.mode, missing, pool_size=pool_size,
                                pool_possible=pool_possible, regens=regens, n_params=n_params,
                                replay_params_per_s=rate)

        chosen = plan(pool_join_possible(node))
        self.stats["replay_estimate_s"] = chosen.replay_estimate_s
        conn = node.mesh.connection(address)
        try:
            if chosen.first == "pool":
                pooled = await join_from_pool(self, conn)
                if pooled is not None:
                    target = target.merged(pooled)
                else:
                    chosen = plan(False)
            if chosen.first == "snapshot":
                got = await self._snapshot(conn, applied, chosen.replay_estimate_s)
                if got is not None:
                    target = target.merged(got)
            self.state, self.progress = "replay", 0.0
            await self.fetch_codes(conn, target)
        finally:
            await conn.close()
        return target

    async def _ask_others(self, first: bytes, target: VersionVector) -> None:
        """The first peer did not bring us to ``target``: ask the other linked
        peers that hold some of what is missing, most first, one at a time,
        each with its own stall deadline. What none of them serves, gossip
        pulls later; ``catchup_stalled_missing`` says how much that was."""
        node = self.node
        tried = {first}
        while True:
            applied = node.engine.applied_vector()
            others = [(pid, r.vector) for pid, r in node.swarm.gossip.peers.items()
                      if pid not in tried and r.vector is not None and any(
                          min(r.vector.get(o), n) > applied.get(o) for o, n in target.items())]
            if not others:
                return
            pid = order_peers(target, others)[0]
            tried.add(pid)
            address = node.mesh.peer_address(pid)
            if address is None:
                continue
            held = dict(others)[pid]
            upto = VersionVector({o: min(n, held.get(o)) for o, n in target.items()})
            self.stats["peers_asked"] = self.stats.get("peers_asked", 1.0) + 1.0
            log.info("asking peer %s for the %d updates the first one did not serve",
                     pid.hex()[:12], sum(e - s for _, s, e in applied.missing_from(upto)))
            conn = node.mesh.connection(address)
            try:
                await self.fetch_codes(conn, upto)
            except PEER_FAILURES as exc:
                log.warning("peer %s broke off too (%s)", pid.hex()[:12], type(exc).__name__)
                continue
            finally:
                await conn.close()
            if await self._await_applied(target):
                self.stats.pop("stalled_missing", None)
                return

    # -- pieces --------------------------------------------------------------------
    def _n_params(self) -> int:
        return sum(p.numel() for p in self.node.trainable)

    def _pool_size(self) -> int:
        pool = self.node.engine.pool
        return pool.size if pool is not None else 0

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
        dest = node.checkpoint_dir / ".incoming-snapshot.part"
        marks: list[float] = []

        def on_chunk(chunk: SnapshotChunk) -> bool:
            marks.append(time.perf_counter())
            self.progress = (chunk.index + 1) / chunk.total
            if len(marks) == 2:
                rate = len(chunk.data) / max(marks[1] - marks[0], 1e-6)
                self.stats["link_bytes_per_s"] = rate
                snap_s = chunk.total * len(chunk.data) / rate
                self.stats["snapshot_estimate_s"] = snap_s
                if not keep_snapshot(self.mode, snap_s, replay_s):
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
                                                         node.checkpoint_dir))
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
        """Fill the store up to ``upto`` from the peer; delivered to the trainer
        only once the catch-up released it (before that, ``_release`` hands over
        everything at once)."""
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
                    fresh = gossip.on_fetched(batch, want, time.monotonic())
                    if not self.holding:  # after the release, the trainer gets them now
                        for run in fresh:
                            node.trainer.submit(run)
                    got += sum(len(r) for r in fresh)
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

    async def _await_applied(self, target: VersionVector) -> bool:
        """Wait until the trainer applied ``target``, or until the part of it this
        node holds has been applied and nothing more of it arrives for
        STALL_AFTER_S: a peer that claimed ranges it never serves must not keep
        the trainer paused: then return False (the caller asks another peer,
        then trains on what it has) and say so: ``catchup_stalled_missing``."""
        node = self.node
        start = node.engine.applied_vector().total()
        span = max(1, target.total() - start)
        reached, moved_at = -1, time.monotonic()
        while node.trainer.error is None:
            applied = node.engine.applied_vector()
            self.progress = min(1.0, (applied.total() - start) / span)
            if applied.dominates(target) or not node.trainer.is_alive():
                return True
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
                            "%.0fs", short, STALL_AFTER_S)
                return False
            await asyncio.sleep(0.05)
        return True

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
