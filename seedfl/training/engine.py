"""The engine: one node's model, and the only code that changes its weights.

Contract (DESIGN §2):
- ``apply(batch)`` applies updates of one origin in seq order; a batch must start
  exactly where the engine's applied count for that origin ends (the update
  store guarantees contiguity; anything else is a bug and raises).
- ``step()`` computes this node's next update at the current θ on the next local
  batch, encodes it to one byte, applies it like anybody else's, and returns it.
- The weights change only through ``apply``; with η = 0 they stay bit-identical.
- ``apply_many(batches)`` applies several batches (any origins) at once; in pool
  mode (DESIGN §5) all their updates that share a slot cost one regeneration.

Pool mode keeps ``pool`` (``PoolAccumulators``) exactly in step with the weights:
every applied update adds its integer term to its slot, and the weights move by
−unit·Δ per touched slot, so θ ≈ θ₀ − Σ_k A[k]·z(pool[k]) up to float rounding.
Slots: uniform mode derives them from (origin, seq) and batches must carry none;
importance mode draws this node's slot from ``pool.probabilities()`` and batches
must carry theirs. ``join_from_pool`` rebuilds a fresh model from a peer's
serialised accumulators (K regenerations, whatever the length of training).

The engine is single-threaded by design: the trainer thread owns it. It knows
nothing of sockets, the event loop, or where updates came from.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from seedfl.core.codecs import Codec, make_codec
from seedfl.core.config import SwarmConfig
from seedfl.core.perturbation import direction
from seedfl.core.pool import PoolAccumulators, draw_slot, rebuild_
from seedfl.core.rule import LearningRate, apply_coalesced_
from seedfl.core.scales import Scale, scales_digest, tensor_scales
from seedfl.core.seeds import pool_seeds, uniform_pool_index, update_seed
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.training.act_scales import activation_scales
from seedfl.training.data import Example, batches
from seedfl.training.divergence import DivergenceWatch
from seedfl.training.estimator import Estimator
from seedfl.training.model import ModelBundle
from seedfl.training.prefix import FrozenPrefix
from seedfl.training.task import Task

# Replica fingerprint: a fixed random projection of the first elements of each
# trainable tensor. Equal version vectors must give equal projections up to the
# float rounding of applying the same sums in different orders.
_PROJECTION_SEED = 0x5EEDF1_0000_0001
_PROJECTION_ELEMENTS = 4096


def swarm_weight(rule: str, contributors: int) -> float:
    """w(N) of ``zo.swarm_scale``: mean 1/N, sqrt 1/√N, none 1."""
    if rule == "mean":
        return 1.0 / contributors
    if rule == "sqrt":
        return 1.0 / math.sqrt(contributors)
    if rule == "none":
        return 1.0
    raise ValueError(f"unknown zo.swarm_scale {rule!r}")


class DivergedError(RuntimeError):
    """The loss became NaN or stayed far above its start (``divergence.py``): η is too
    large for this model and task."""


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
    coalesced_terms: int = 0  # applied updates with a non-zero term
    regenerations: int = 0  # directions regenerated to apply them

    @property
    def coalescing_ratio(self) -> float:
        """Updates per regeneration (1.0 without pool coalescing; status shows it)."""
        return self.coalesced_terms / self.regenerations if self.regenerations else 1.0


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
        # From θ₀: the engine is built before any checkpoint or update is applied.
        self.scales: tuple[Scale, ...] = tensor_scales(bundle.params, cfg.zo.scale)
        if cfg.zo.scale == "act0":
            self.scales = activation_scales(bundle, task, self.scales)
        # What peers must share to replay our updates: θ₀ and every tensor's scale.
        # act0's exponents come from a forward pass, so they are folded in: a node
        # whose forward rounds differently presents a different fingerprint.
        self.fingerprint = (bundle.fingerprint if cfg.zo.scale != "act0" else hashlib.blake2b(
            bundle.fingerprint + scales_digest(self.scales), digest_size=len(bundle.fingerprint),
            person=b"seedfl/act0/v1").digest())
        self.estimator = Estimator(
            bundle, task, cfg.zo.eps, kind=self.kind, scales=self.scales,
            prefix=FrozenPrefix.build(bundle, cfg.zo.prefix_cache_mb))
        self.applied: dict[bytes, int] = {}
        self.stats = EngineStats()
        self._batches: Iterator[list[Example]] | None = (
            batches(list(examples), node_id, cfg.zo.batch_size) if examples else None
        )
        self.pool: PoolAccumulators | None = None
        self._pool_seeds: list[int] = []
        if cfg.zo.seeds == "pool":
            self.pool = PoolAccumulators(cfg.zo.pool_size, self.codec, self.lr)
            self._pool_seeds = pool_seeds(self.swarm_key, cfg.zo.pool_size)
        self._importance = self.pool is not None and cfg.zo.pool_sampling == "importance"
        self.divergence = DivergenceWatch()
        self.swarm_scale = cfg.zo.swarm_scale
        self.projection_norm = 0.0
        self._projection_dirs = [
            direction(_PROJECTION_SEED, t, min(p.numel(), _PROJECTION_ELEMENTS), "rademacher")
            for t, p in enumerate(bundle.params)
        ]

    # -- seeds -------------------------------------------------------------
    def seed_of(self, origin: bytes, seq: int, slot: int | None) -> int:
        if self.pool is not None:
            return self._pool_seeds[self.slot_of(origin, seq, slot)]
        return update_seed(self.swarm_key, origin, seq)

    def slot_of(self, origin: bytes, seq: int, slot: int | None) -> int:
        """Pool slot of an update: the one it carries, or the uniform hash of (origin, seq)."""
        size = self.cfg.zo.pool_size
        if slot is None:
            return uniform_pool_index(self.swarm_key, origin, seq, size)
        if not 0 <= slot < size:
            raise ValueError(f"slot {slot} is outside the pool of {size}")
        return slot

    def _slots(self, batch: UpdateBatch) -> list[int]:
        if self._importance != (batch.slots is not None):
            raise ValueError(
                f"batch of {batch.origin.hex()[:8]} {'carries' if batch.slots else 'lacks'} "
                f"slots; this swarm's pool sampling is {self.cfg.zo.pool_sampling}")
        if batch.slots is not None:
            return [self.slot_of(batch.origin, 0, k) for k in batch.slots]
        return [self.slot_of(batch.origin, seq, None)
                for seq in range(batch.first_seq, batch.end_seq)]

    # -- applying ----------------------------------------------------------
    def apply(self, batch: UpdateBatch) -> None:
        """Apply a contiguous batch of one origin's updates (coalescing equal seeds)."""
        self.apply_many([batch])

    def apply_many(self, batches: Sequence[UpdateBatch]) -> None:
        """Apply batches in order, each contiguous with what precedes it for its origin.

        Everything is validated before anything changes: a ValueError (gap, slot
        mismatch) or CodecError leaves the weights and accumulators untouched.
        """
        ends = dict(self.applied)
        for batch in batches:
            have = ends.get(batch.origin, 0)
            if batch.first_seq != have:
                raise ValueError(
                    f"batch of {batch.origin.hex()[:8]} starts at {batch.first_seq}, "
                    f"applied count is {have}"
                )
            ends[batch.origin] = batch.end_seq
            self.codec.decode_many(batch.codes)  # raises CodecError on an invalid code
        t0 = time.perf_counter()
        if self.pool is not None:
            terms = self._pool_terms(batches)
        else:
            terms = []
            for batch in batches:
                for u in batch.updates():
                    coef = -self.lr.at(u.seq) * self.codec.decode(u.code)
                    if coef != 0.0:
                        terms.append((update_seed(self.swarm_key, u.origin, u.seq), coef))
            self.stats.coalesced_terms += len(terms)
        if terms:
            self.stats.regenerations += apply_coalesced_(self.bundle.params, terms, self.kind,
                                                          self.scales)
            self.bundle.sync_to_model()
        for batch in batches:
            self.applied[batch.origin] = batch.end_seq
            self.stats.applied += len(batch)
            if batch.origin == self.node_id:
                self.stats.applied_own += len(batch)
        self.stats.apply_seconds += time.perf_counter() - t0

    def _pool_terms(self, batches: Sequence[UpdateBatch]) -> list[tuple[int, float]]:
        """Add the batches to the accumulators; one (seed, −unit·Δ) per touched slot."""
        assert self.pool is not None
        slots = [self._slots(b) for b in batches]  # validated before any accumulator moves
        merged: dict[int, int] = {}
        before = self.pool.nonzero
        for batch, ks in zip(batches, slots, strict=True):
            for k, delta in self.pool.add_batch(batch.first_seq, batch.codes, ks).items():
                merged[k] = merged.get(k, 0) + delta
        self.stats.coalesced_terms += self.pool.nonzero - before
        return [(self._pool_seeds[k], -self.pool.value_of(d)) for k, d in merged.items() if d]

    # -- pool state (joiners, checkpoints) ------------------------------------
    def pool_snapshot(self) -> bytes:
        """The accumulators a joiner rebuilds θ from: K float32 plus framing."""
        if self.pool is None:
            raise RuntimeError("this swarm does not use a seed pool")
        return self.pool.to_bytes()

    def pool_state(self) -> bytes:
        """The exact accumulators and importance history (checkpoints, exact joins)."""
        if self.pool is None:
            raise RuntimeError("this swarm does not use a seed pool")
        return self.pool.to_exact_bytes()

    def load_pool_state(self, data: bytes) -> None:
        """Restore accumulators that match the weights restored from a checkpoint."""
        if self.pool is None:
            raise RuntimeError("this swarm does not use a seed pool")
        self.pool.load_bytes(data)

    def join_from_pool(self, data: bytes, applied: VersionVector) -> int:
        """Fresh engine at θ₀: θ = θ₀ − Σ A[k]·z(pool[k]) from a peer's accumulators
        (either form) taken at version vector ``applied``. Returns the regenerations.

        Raises PoolStateError for bytes of another pool, RuntimeError if updates
        were applied here already.
        """
        if self.pool is None:
            raise RuntimeError("this swarm does not use a seed pool")
        if self.applied:
            raise RuntimeError("join_from_pool needs an engine that has applied nothing")
        t0 = time.perf_counter()
        self.pool.load_bytes(data)
        regenerated = rebuild_(self.bundle.params, self.pool.values(), self._pool_seeds,
                               self.kind, self.scales)
        self.bundle.sync_to_model()
        self.applied = {o: n for o, n in applied.items() if n > 0}
        self.stats.regenerations += regenerated
        self.stats.apply_seconds += time.perf_counter() - t0
        return regenerated

    def applied_vector(self) -> VersionVector:
        return VersionVector(dict(self.applied))

    def next_seq(self) -> int:
        return self.applied.get(self.node_id, 0)

    # -- training ----------------------------------------------------------
    def can_train(self) -> bool:
        return self._batches is not None

    def step(self, contributors: int = 1) -> UpdateBatch:
        """Compute, encode and apply this node's next update; return it.

        ``contributors`` is N, the live contributors this node counts now
        (itself included): the code is encode(g · w(N)) with w from
        ``zo.swarm_scale`` (docs/LEARNING.md "Swarm size").
        """
        if contributors < 1:
            raise ValueError(f"contributors must be >= 1 (itself included), got {contributors}")
        if self._batches is None:
            raise RuntimeError("this node has no training data")
        t0 = time.perf_counter()
        seq = self.next_seq()
        slot = None
        if self.pool is not None and self._importance:
            slot = draw_slot(self.swarm_key, self.node_id, seq, self.pool.probabilities())
        seed = self.seed_of(self.node_id, seq, slot)
        encoded = self.task.encode(next(self._batches))
        est = self.estimator.estimate(encoded, seed)
        loss = 0.5 * (est.loss_plus + est.loss_minus)
        why = self.divergence.observe(loss if math.isfinite(est.g) else math.nan)
        if why is not None:
            # Raised before the update is applied: a diverged step never reaches the log.
            raise DivergedError(
                f"training diverged at update {seq}: {why}; this node stopped its own "
                f"steps. Lower zo.lr (now {self.cfg.zo.lr}) or zo.eps (now {self.cfg.zo.eps})"
            )
        code, clipped = self.codec.encode(est.g * swarm_weight(self.swarm_scale, contributors),
                                          seed)
        self.stats.clipped += int(clipped)
        self.stats.last_g = est.g
        batch = UpdateBatch(self.node_id, seq, bytes([code]), None if slot is None else (slot,))
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
        """r·θ over a fixed head of every tensor (r: fixed Rademacher), as float64.

        Also refreshes ``projection_norm`` = ‖θ_head‖. For Rademacher r,
        E[(r·Δ)²] = ‖Δ‖², so |r·θ_a − r·θ_b| / ‖θ_head‖ estimates the relative
        L2 difference of two replicas; dividing by |r·θ| instead would blow up
        whenever the projection happens to land near zero.
        """
        total, sq = 0.0, 0.0
        with torch.no_grad():
            for p, r in zip(self.bundle.params, self._projection_dirs, strict=True):
                head = p.reshape(-1)[: r.numel()].detach().to("cpu", torch.float64)
                total += float(torch.dot(head, r.to(torch.float64)))
                sq += float(torch.dot(head, head))
        self.projection_norm = math.sqrt(sq)
        return total
