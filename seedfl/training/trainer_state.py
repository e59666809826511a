"""What the trainer thread publishes to other threads: one immutable snapshot.

The trainer thread owns the engine; the event loop must never read the
engine's counters one by one while the thread changes them (a Status that
reads ``next_seq()`` before a step and the applied vector after it says two
different things at once). Instead the thread builds a ``TrainerState`` after
every change and replaces its ``state`` attribute with it: one reference
assignment, atomic under the GIL, so a reader holds either the old snapshot or
the new one, never a mixture.

Invariants of one snapshot (tests check them):
- ``own_seq == applied.get(node_id)``: the engine applies its own update in
  ``step``, so the own count and the applied vector move together;
- ``applied_total == applied.total()`` and ``applied_digest == applied.digest()``;
- ``projection`` is r·θ at exactly ``applied`` (divergence compares it with
  peers at the same digest).

This module knows nothing of threads, the event loop or the swarm; it only
says how a snapshot is taken from an engine.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from seedfl.core.version_vector import VersionVector
from seedfl.training.engine import Engine, EngineStats


@dataclass(frozen=True)
class PoolFingerprint:
    """Pool state at one applied vector: digest of the exact accumulators, slots used."""

    applied_vv_digest: bytes
    digest: bytes
    slots_used: int


@dataclass(frozen=True)
class TrainerState:
    """The engine's numbers at one instant between two trainer-loop turns."""

    own_seq: int  # own updates made = the seq of the next one
    applied: VersionVector
    applied_digest: bytes
    applied_total: int
    projection: float
    projection_norm: float
    stats: EngineStats  # a private copy: never mutated after the snapshot is taken
    refused: int = 0
    drains: int = 0
    drained_batches: int = 0
    pool: PoolFingerprint | None = None
    # max_staleness: True while own steps wait for the slowest live peer.
    held_by_staleness: bool = False
    staleness_waits: int = 0  # times the trainer started waiting
    taken_at: float = 0.0  # time.monotonic() of the snapshot

    @classmethod
    def of(cls, engine: Engine, *, refused: int = 0, drains: int = 0, drained_batches: int = 0,
           pool: PoolFingerprint | None = None, held_by_staleness: bool = False,
           staleness_waits: int = 0) -> TrainerState:
        """Snapshot ``engine`` now, with the trainer's own counters. Runs on the
        thread that owns the engine."""
        vv = engine.applied_vector()
        projection = engine.projection()  # also refreshes projection_norm
        return cls(
            own_seq=engine.next_seq(), applied=vv, applied_digest=vv.digest(),
            applied_total=vv.total(), projection=projection,
            projection_norm=engine.projection_norm,
            stats=dataclasses.replace(engine.stats), refused=refused, drains=drains,
            drained_batches=drained_batches, pool=pool, held_by_staleness=held_by_staleness,
            staleness_waits=staleness_waits, taken_at=time.monotonic(),
        )

    def with_pool(self, pool: PoolFingerprint | None) -> TrainerState:
        return dataclasses.replace(self, pool=pool)
