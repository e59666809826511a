"""The engine: one node's model, and the only code that changes its weights.

Contract (DESIGN §2):
- ``apply(batch)`` applies updates of one origin in seq order; a batch must start
  exactly where the engine's applied count for that origin ends (the update
  store guarantees contiguity; anything else is a bug and raises).
- ``step()`` computes this node's next update at the current θ on the next local
  batch, encodes it to one byte, applies it like anybody else's, and returns it.
- The weights change only through ``apply``; with η = 0 they stay bit-identical.

The engine is single-threaded by design: the trainer thread owns it. It knows
nothing of sockets, the event loop, or where updates came from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from seedfl.core.codecs import Codec, make_codec
from seedfl.core.config import SwarmConfig
from seedfl.core.perturbation import direction
from seedfl.core.rule import LearningRate, apply_coalesced_
from seedfl.core.seeds import pool_seed, uniform_pool_index, update_seed
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.training.data import Example, batches
from seedfl.training.estimator import Estimator
from seedfl.training.model import ModelBundle
from seedfl.training.task import Task

# Replica fingerprint: a fixed random projection of the first elements of each
# trainable tensor. Equal version vectors must give equal projections up to the
# float rounding of applying the same sums in different orders.
_PROJECTION_SEED = 0x5EEDF1_0000_0001
_PROJECTION_ELEMENTS = 4096


class DivergedError(RuntimeError):
    """The loss became NaN or exploded: η is too large for this model and task."""


@dataclass
class EngineStats:
    steps: int = 0
    applied: int = 0
    applied_own: int = 0
    clipped: int = 0
    loss_ema: float | None = None
    last_g: float = 0.0
    step_seconds_ema: float | None = None
    apply_seconds: float = 0.0
    coalesced_terms: int = 0
    regenerations: int = 0


class Engine:
    def __init__(
        self,
        cfg: SwarmConfig,
        bundle: ModelBundle,
        task: Task,
        examples: Sequence[Example],
        node_id: bytes,
    ) -> None:
        self.cfg = cfg
        self.bundle = bundle
        self.task = task
        self.node_id = node_id
        self.swarm_key = cfg.swarm_key()
        self.codec: Codec = make_codec(cfg.codec)
        self.lr = LearningRate(cfg.zo)
        self.kind = cfg.zo.perturbation
        self.estimator = Estimator(bundle, task, cfg.zo.eps, kind=self.kind)
        self.applied: dict[bytes, int] = {}
        self.stats = EngineStats()
        self._batches: Iterator[list[Example]] | None = (
            batches(list(examples), node_id, cfg.zo.batch_size) if examples else None
        )
        self._projection_dirs = [
            direction(_PROJECTION_SEED, t, min(p.numel(), _PROJECTION_ELEMENTS), "rademacher")
            for t, p in enumerate(bundle.params)
        ]

    # -- seeds -------------------------------------------------------------
    def seed_of(self, origin: bytes, seq: int, slot: int | None) -> int:
        if self.cfg.zo.seeds == "pool":
            k = slot if slot is not None else uniform_pool_index(
                self.swarm_key, origin, seq, self.cfg.zo.pool_size)
            return pool_seed(self.swarm_key, k)
        return update_seed(self.swarm_key, origin, seq)

    # -- applying ----------------------------------------------------------
    def apply(self, batch: UpdateBatch) -> None:
        """Apply a contiguous batch of one origin's updates (coalescing equal seeds)."""
        have = self.applied.get(batch.origin, 0)
        if batch.first_seq != have:
            raise ValueError(
                f"batch of {batch.origin.hex()[:8]} starts at {batch.first_seq}, "
                f"applied count is {have}"
            )
        t0 = time.perf_counter()
        terms: list[tuple[int, float]] = []
        for u in batch.updates():
            coef = -self.lr.at(u.seq) * self.codec.decode(u.code)
            if coef != 0.0:
                terms.append((self.seed_of(u.origin, u.seq, u.slot), coef))
        if terms:
            distinct = len({s for s, _ in terms})
            apply_coalesced_(self.bundle.params, terms, self.kind)
            self.stats.coalesced_terms += len(terms)
            self.stats.regenerations += distinct
            self.bundle.sync_to_model()
        self.applied[batch.origin] = batch.end_seq
        self.stats.applied += len(batch)
        if batch.origin == self.node_id:
            self.stats.applied_own += len(batch)
        self.stats.apply_seconds += time.perf_counter() - t0

    def applied_vector(self) -> VersionVector:
        return VersionVector(dict(self.applied))

    def next_seq(self) -> int:
        return self.applied.get(self.node_id, 0)

    # -- training ----------------------------------------------------------
    def can_train(self) -> bool:
        return self._batches is not None

    def step(self) -> UpdateBatch:
        """Compute, encode and apply this node's next update; return it."""
        if self._batches is None:
            raise RuntimeError("this node has no training data")
        t0 = time.perf_counter()
        seq = self.next_seq()
        slot = None
        if self.cfg.zo.seeds == "pool" and self.cfg.zo.pool_sampling == "importance":
            raise NotImplementedError("importance sampling of pool slots is not built yet")
        seed = self.seed_of(self.node_id, seq, slot)
        encoded = self.task.encode(next(self._batches))
        est = self.estimator.estimate(encoded, seed)
        loss = 0.5 * (est.loss_plus + est.loss_minus)
        if not math.isfinite(loss) or not math.isfinite(est.g):
            raise DivergedError(
                f"loss is {loss} at update {seq}: training diverged; lower zo.lr "
                f"(now {self.cfg.zo.lr}) or zo.eps (now {self.cfg.zo.eps})"
            )
        code, clipped = self.codec.encode(est.g, seed)
        self.stats.clipped += int(clipped)
        self.stats.last_g = est.g
        batch = UpdateBatch(self.node_id, seq, bytes([code]))
        self.apply(batch)
        self.stats.steps += 1
        ema = self.stats.loss_ema
        self.stats.loss_ema = loss if ema is None else 0.95 * ema + 0.05 * loss
        dt = time.perf_counter() - t0
        sema = self.stats.step_seconds_ema
        self.stats.step_seconds_ema = dt if sema is None else 0.9 * sema + 0.1 * dt
        return batch

    # -- replica fingerprint -------------------------------------------------
    def projection(self) -> float:
        total = 0.0
        with torch.no_grad():
            for p, r in zip(self.bundle.params, self._projection_dirs, strict=True):
                head = p.reshape(-1)[: r.numel()].detach().to("cpu", torch.float64)
                total += float(torch.dot(head, r.to(torch.float64)))
        return total
