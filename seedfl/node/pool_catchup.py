"""Catching up from a peer's seed-pool accumulators (DESIGN §5, §7).

In pool mode θ = θ₀ − Σ_k A[k]·z(pool[k]), so a node that has applied nothing
can rebuild the swarm's θ from K accumulators in K regenerations, whatever the
number of updates. ``join_from_pool`` does it for ``CatchUp``:

1. ask the peer for its accumulators (the Accumulators RPC: K float32 plus 52
   bytes of framing, at the peer's applied version vector, taken on its
   trainer thread between steps, so the pair is consistent);
2. fetch the code log up to that vector (one byte per update; our log must
   hold every update our state reflects, as in the snapshot path, and the
   store serves them to others);
3. compute the exact integer accumulators of those codes off the loop and
   require their serialised snapshot form to equal the peer's bytes, byte for
   byte (same K, unit, update count, digest and float32 values); anything else
   means the peer's state does not match its log, and the node replays
   instead;
4. append the codes to our log, then on the trainer thread rebuild θ from the
   exact accumulators (``Engine.join_from_pool``), which leaves this node with
   the swarm's accumulator digest, and write a checkpoint at once.

What is newer than the peer's vector is replayed by the caller as usual.
``serve_accumulators`` answers the RPC. This module does not parse wire
messages or touch tensors itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from seedfl.core.version_vector import VersionVector
from seedfl.net.connection import PeerConnection
from seedfl.net.convert import PoolState
from seedfl.net.servicer import PoolUnavailable
from seedfl.training.snapshot import pool_from_codes

if TYPE_CHECKING:
    from seedfl.node.catchup import CatchUp
    from seedfl.node.ports import CatchUpHost
    from seedfl.training.engine import Engine
    from seedfl.training.trainer import TrainerThread

log = logging.getLogger("seedfl.catchup")

_TRAINER_CALL = 120.0
_CODES_WAIT = 10.0  # seconds for the peer's newest own codes to reach its store


def pool_join_possible(node: CatchUpHost) -> bool:
    """A pool join needs a pool and an engine that has applied nothing yet."""
    return node.engine.pool is not None and not node.engine.applied


async def join_from_pool(catchup: CatchUp, conn: PeerConnection) -> VersionVector | None:
    """Bring a fresh engine to the peer's accumulators; None when it could not (the
    caller replays instead). Sets ``catchup.method`` and its stats on success."""
    node = catchup.node
    catchup.state, catchup.progress = "pool", 0.0
    t0 = time.perf_counter()
    try:
        got, wire_bytes = await conn.accumulators()
    except PoolUnavailable as exc:
        log.info("peer serves no pool accumulators (%s); replaying instead", exc)
        return None
    catchup.stats.update(state_bytes=float(len(got.state)), state_wire_bytes=float(wire_bytes),
                         pool_fetch_seconds=time.perf_counter() - t0)
    catchup.progress = 0.25
    # The peer's newest own update may be applied before its loop stored it: retry briefly.
    end = time.monotonic() + _CODES_WAIT
    while True:
        await catchup.fetch_codes(conn, got.vv)
        if node.store.version_vector().dominates(got.vv) or time.monotonic() > end:
            break
        await asyncio.sleep(0.05)
    if not node.store.version_vector().dominates(got.vv):
        log.warning("peer did not serve the codes its accumulators cover; replaying instead")
        return None
    catchup.progress = 0.5
    loop = asyncio.get_running_loop()
    exact = await loop.run_in_executor(None, _exact_state, node, got)
    if exact is None:
        log.warning("peer's accumulators do not match the codes it served; replaying instead")
        return None
    catchup.stats["pool_verify_seconds"] = time.perf_counter() - t0
    await loop.run_in_executor(None, catchup.log_prefix, got.vv)
    def install() -> int:
        done = node.engine.join_from_pool(exact, got.vv)
        node.trainer.checkpoint()  # or a restart would replay the whole log
        return done

    fut = node.trainer.call(install)
    regenerations = await asyncio.wait_for(asyncio.wrap_future(fut), _TRAINER_CALL)
    catchup.method = "pool"
    catchup.stats.update(pool_regenerations=float(regenerations),
                         pool_seconds=time.perf_counter() - t0)
    log.info("rebuilt θ from %d pool accumulators at %d updates (%d bytes, %d regenerations, "
             "%.2fs)", node.engine.pool.size if node.engine.pool else 0, got.vv.total(),
             len(got.state), regenerations, time.perf_counter() - t0)
    return got.vv


def _exact_state(node: CatchUpHost, got: PoolState) -> bytes | None:
    """The exact accumulators of the stored codes up to ``got.vv``, if their snapshot
    form is the peer's bytes; else None."""
    store = node.store
    batches = (store.get_range(origin, 0, n) for origin, n in got.vv.items() if n > 0)
    try:
        acc = pool_from_codes(node.engine, batches)
    except (ValueError, KeyError) as exc:
        log.warning("cannot recompute the pool accumulators: %s", exc)
        return None
    if acc.to_bytes() != got.state:
        return None
    return acc.to_exact_bytes()


async def serve_accumulators(engine: Engine, trainer: TrainerThread) -> PoolState:
    """The Accumulators RPC: this node's applied vector and snapshot-form accumulators,
    taken together on the trainer thread."""
    if engine.pool is None:
        raise PoolUnavailable("this swarm does not use a seed pool (zo.seeds is not \"pool\")")
    fut = trainer.call(lambda: (engine.applied_vector(), engine.pool_snapshot()))
    vv, state = await asyncio.wait_for(asyncio.wrap_future(fut), _TRAINER_CALL)
    return PoolState(vv, state)
