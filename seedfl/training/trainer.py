"""The trainer thread: the one thread that owns the model (DESIGN §9).

Loop: drain the inbound queue of contiguous peer batches and apply all of them
with one ``Engine.apply_many`` (in pool mode, pending updates that share a
seed cost one regeneration: DESIGN §5, §9), log them, then, while this node
still has steps to take, compute one own update, log it durably (fsync)
*before* handing it out, and publish it through a callback.
Publishing before logging could let peers hold an update its origin forgets
after a crash, and the origin would then reuse that seq with another code.

The thread never touches sockets; the callback is expected to hop onto the
event loop (``loop.call_soon_threadsafe``). Checkpoints are written every
``checkpoint_every`` applied updates and once more on stop; in pool mode they
carry the exact accumulators (``statedir.POOL_BLOB``).

A drained group the engine refuses (a bad slot or code that got past the
checks at receipt: a bug, never a peer's doing) is retried batch by batch and
the refused batches are counted in ``refused`` and logged; the thread goes on.

Other threads that need a consistent view of the weights (a snapshot for a
joiner) or must replace them (installing a snapshot) hand a function to
``call``; the thread runs it between steps and resolves the returned future.
While ``paused`` is set the thread takes no own steps but still applies
inbound batches and runs calls (a node catching up must not reuse seqs).

Other threads read the engine's numbers only through ``state``, one
immutable ``TrainerState`` replaced after every change (``trainer_state``).
``publish(batch)`` is called after ``state`` includes that batch, so a caller
that reads ``state`` inside ``publish`` gets the snapshot that goes with it.

``max_staleness`` (swarm config, DESIGN §6): the event loop sets ``floor``,
the own-update count of the slowest live peer (None: no such peer). While
own_seq − floor ≥ max_staleness the thread takes no own step, exactly as if
paused, and ``state.held_by_staleness`` says so. The check runs on this
thread right before each step, so the bound holds to the update.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from seedfl.core.codecs import CodecError
from seedfl.core.log import UpdateLog
from seedfl.core.updates import UpdateBatch
from seedfl.training.checkpoint import save_checkpoint
from seedfl.training.engine import DivergedError, Engine
from seedfl.training.statedir import POOL_BLOB
from seedfl.training.trainer_state import PoolFingerprint, TrainerState

log = logging.getLogger(__name__)


@dataclass
class TrainerOptions:
    max_steps: int | None = None
    checkpoint_every: int = 1000
    # Upper bound on how long the thread waits for inbound updates when it has
    # no step of its own to take; only affects shutdown latency.
    idle_wait: float = 0.05
    # Seconds to sleep between own steps (0 = as fast as possible). For tests
    # and for sharing a machine politely.
    step_interval: float = 0.0
    # Updates applied in one apply_many at most (bounds one drain's latency).
    drain_updates: int = 65_536
    # Seconds between refreshes of the pool digest while busy (it costs about
    # 20 ms for K = 4096); a loop turn that changed nothing refreshes it at once.
    pool_digest_every: float = 1.0
    # swarm.max_staleness: 0 never waits; N waits while own_seq - floor >= N.
    max_staleness: int = 0


class TrainerThread(threading.Thread):
    def __init__(
        self,
        engine: Engine,
        update_log: UpdateLog | None,
        checkpoint_dir: object | None,
        publish: Callable[[UpdateBatch], None],
        options: TrainerOptions | None = None,
        contributors: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(name="seedfl-trainer", daemon=True)
        # N for zo.swarm_scale, read right before each own step (the node's count
        # of live recent contributors, itself included); None = alone (1).
        self.contributors = contributors
        self.engine = engine
        self.update_log = update_log
        self.checkpoint_dir = checkpoint_dir
        self.publish = publish
        self.options = options or TrainerOptions()
        self.inbound: queue.SimpleQueue[UpdateBatch] = queue.SimpleQueue()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self._calls_lock = threading.Lock()
        self._ended = False  # the thread finished: calls run on the caller's thread
        self._halt = threading.Event()
        self.steps_done = threading.Event()
        self.error: BaseException | None = None
        self._since_checkpoint = 0
        self._started_at = time.monotonic()
        self._steps_at_start = engine.stats.steps
        self.paused = threading.Event()
        # Own-update count of the slowest live peer, set by the event loop
        # (an int assignment: atomic); None = nobody to wait for.
        self.floor: int | None = None
        self._held = False
        self._staleness_waits = 0
        # Pool mode only; refreshed less often than ``state`` (see options).
        self._pool: PoolFingerprint | None = None
        self._pool_stale = engine.pool is not None
        self._pool_at = 0.0
        self.refused = 0  # updates of batches the engine refused (see module doc)
        self.drained_batches = 0
        self.drains = 0
        self.state: TrainerState = self._snapshot()

    def _snapshot(self) -> TrainerState:
        return TrainerState.of(
            self.engine, refused=self.refused, drains=self.drains,
            drained_batches=self.drained_batches, pool=self._pool,
            held_by_staleness=self._held, staleness_waits=self._staleness_waits)

    @property
    def fingerprint(self) -> tuple[bytes, float, int]:
        """(applied vector digest, projection of θ, applied total) of one snapshot."""
        st = self.state
        return st.applied_digest, st.projection, st.applied_total

    @property
    def pool_fingerprint(self) -> PoolFingerprint | None:
        return self.state.pool

    def _refresh_pool(self, quiet: bool) -> None:
        pool = self.engine.pool
        if pool is None or not self._pool_stale:
            return
        now = time.monotonic()
        if not quiet and now - self._pool_at < self.options.pool_digest_every:
            return
        self._pool = PoolFingerprint(
            self.engine.applied_vector().digest(), pool.digest(),
            sum(1 for c in pool.counts if c))
        self._pool_stale, self._pool_at = False, now
        self.state = self.state.with_pool(self._pool)

    # called from the event loop thread
    def submit(self, batch: UpdateBatch) -> None:
        self.inbound.put(batch)

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the trainer thread between steps; the future gets its result.

        Once the thread has ended (stopped, diverged or failed) nothing mutates
        the model any more, so ``fn`` runs at once on the caller's thread: a
        caller must never wait on a thread that will not come back."""
        fut: Future[Any] = Future()
        with self._calls_lock:
            if not self._ended:
                self._calls.put((fn, fut))
                return fut
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(fn())
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def _run_calls(self) -> bool:
        ran = False
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return ran
            ran = True
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except Exception as exc:  # the caller decides; the trainer goes on
                fut.set_exception(exc)

    def stop(self) -> None:
        self._halt.set()

    def steps_per_second(self) -> float:
        elapsed = time.monotonic() - self._started_at
        done = self.state.stats.steps - self._steps_at_start
        return done / elapsed if elapsed > 0 else 0.0

    def _limit_reached(self) -> bool:
        # max_steps counts this node's own updates over its whole life (its seq),
        # so rerunning the same command after a crash finishes the same job.
        limit = self.options.max_steps
        return limit is not None and self.engine.next_seq() >= limit

    def _ahead(self) -> bool:
        """max_staleness: own_seq − floor ≥ N (see the module doc)."""
        n, floor = self.options.max_staleness, self.floor
        return n > 0 and floor is not None and self.engine.next_seq() - floor >= n

    def _want_step(self) -> bool:
        if not self.engine.can_train() or self.paused.is_set() or self._limit_reached():
            return False
        held = self._ahead()
        if held != self._held:  # publish the change, so status shows why we wait
            self._held = held
            self._staleness_waits += int(held)
            self.state = self._snapshot()
        return not held

    def _drain(self, block: bool) -> int:
        """Apply everything queued (up to ``drain_updates``) at once; return the batch count."""
        got: list[UpdateBatch] = []
        size = 0
        while size < self.options.drain_updates:
            try:
                batch = self.inbound.get(block=block and not got, timeout=self.options.idle_wait)
            except queue.Empty:
                break
            got.append(batch)
            size += len(batch)
        if not got:
            return 0
        try:
            self.engine.apply_many(got)
            applied = got
        except (ValueError, CodecError):
            applied = self._apply_one_by_one(got)
        for batch in applied:
            if self.update_log is not None:
                self.update_log.append(batch)
            self._since_checkpoint += len(batch)
        self.drains += 1
        self.drained_batches += len(got)
        self._pool_stale = self._pool_stale or self.engine.pool is not None
        return len(got)

    def _apply_one_by_one(self, batches: list[UpdateBatch]) -> list[UpdateBatch]:
        applied = []
        for batch in batches:
            try:
                self.engine.apply(batch)
            except (ValueError, CodecError) as exc:
                self.refused += len(batch)
                log.error("refused %d updates of %s from seq %d: %s", len(batch),
                          batch.origin.hex()[:8], batch.first_seq, exc)
                continue
            applied.append(batch)
        return applied

    def _cancel_calls(self) -> None:
        while True:
            try:
                _, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            fut.cancel()

    def checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        if self.update_log is not None:
            self.update_log.flush()
        pool = {POOL_BLOB: self.engine.pool_state()} if self.engine.pool is not None else None
        save_checkpoint(
            self.checkpoint_dir,  # type: ignore[arg-type]
            self.engine.bundle.names,
            self.engine.bundle.params,
            self.engine.applied_vector(),
            {"steps": self.engine.stats.steps},
            blobs=pool,
        )
        self._since_checkpoint = 0

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                want = self._want_step()
                changed = self._drain(block=not want) > 0
                changed = self._run_calls() or changed
                want = want and self._want_step()
                stepped = False
                if want and not self._halt.is_set():
                    changed = stepped = True
                    n = self.contributors() if self.contributors is not None else 1
                    batch = self.engine.step(max(1, n))
                    if self.update_log is not None:
                        self.update_log.append(batch)
                        self.update_log.flush()
                    self._since_checkpoint += 1
                    # The snapshot first: publish's contract (module doc).
                    self.state = self._snapshot()
                    self.publish(batch)
                    if self.options.step_interval > 0:
                        self._halt.wait(self.options.step_interval)
                elif (self.engine.can_train() and self._limit_reached()
                      and not self.paused.is_set()):
                    self.steps_done.set()
                if changed:
                    if not stepped:
                        self.state = self._snapshot()
                    self._pool_stale = self._pool_stale or self.engine.pool is not None
                self._refresh_pool(quiet=not changed)
                if self.update_log is not None:
                    self.update_log.tick()  # the "batch" fsync policy's timer
                if self._since_checkpoint >= self.options.checkpoint_every:
                    self.checkpoint()
            self._drain(block=False)
            self._cancel_calls()
        except DivergedError as exc:
            self.error = exc
            log.error("%s", exc)
        except BaseException as exc:  # surfaced by the node, which exits non-zero
            self.error = exc
            log.exception("trainer thread failed")
        finally:
            try:
                if self.update_log is not None:
                    self.update_log.flush()
                if self.error is None and self._since_checkpoint > 0:
                    self.checkpoint()
            except Exception:
                log.exception("final checkpoint failed")
            self.steps_done.set()
            with self._calls_lock:
                self._ended = True
            self._run_calls()  # what was queued before the end: nobody else will
