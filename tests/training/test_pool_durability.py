"""Pool mode across restarts and joins (DESIGN §5, §8): checkpoints carry the exact
accumulators, recovery restores them before replaying the log tail (coalesced),
a pool checkpoint without them is not used, the trainer thread coalesces what
it drains and survives a batch the engine refuses, and a joiner's accumulators
computed from codes alone match the swarm's byte for byte."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch
from poolkit import PEERS, TASK, engine, flat, peer_batches, rel

from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import load_latest, save_checkpoint
from seedfl.training.engine import Engine
from seedfl.training.snapshot import install_snapshot, pool_from_codes
from seedfl.training.statedir import POOL_BLOB, StateDir, recover
from seedfl.training.trainer import TrainerOptions, TrainerThread

SAMPLINGS = ["uniform", "importance"]


def config(sampling: str = "uniform", size: int = 32) -> SwarmConfig:
    zo = ZOConfig(lr=2e-3, seeds="pool", pool_size=size, pool_sampling=sampling, batch_size=8)
    return SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK, zo=zo)


def digest(e: Engine) -> bytes:
    assert e.pool is not None
    return e.pool.digest()


def state_with(cfg: SwarmConfig, tmp: Path, batches: list[UpdateBatch]) -> StateDir:
    sd = StateDir(tmp / "state")
    sd.open(cfg)
    with sd.open_log(fsync="never") as log:
        for b in batches:
            log.append(b)
    return sd


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_recovery_restores_accumulators_then_replays_the_tail(tmp_path: Path,
                                                              sampling: str) -> None:
    cfg = config(sampling)
    batches = peer_batches(cfg, 60)
    live = engine(cfg)
    live.apply_many(batches[:40])
    sd = state_with(cfg, tmp_path, batches)
    save_checkpoint(sd.checkpoint_dir, live.bundle.names, live.bundle.params,
                    live.applied_vector(), blobs={POOL_BLOB: live.pool_state()})
    at_checkpoint = live.applied_vector().total()
    for b in batches[40:]:
        live.apply(b)
    fresh = engine(cfg)
    log = sd.open_log()
    try:
        report, _ = recover(fresh, sd, log)
    finally:
        log.close()
    assert report.checkpoint_updates == at_checkpoint
    assert report.replayed_updates == live.applied_vector().total() - at_checkpoint
    assert fresh.applied_vector() == live.applied_vector()
    assert digest(fresh) == digest(live)  # bit-identical accumulators
    assert rel(flat(live), flat(fresh)) <= 1e-6
    # The tail was replayed in one group: one regeneration per touched slot at most.
    assert fresh.stats.regenerations <= cfg.zo.pool_size


def test_a_pool_checkpoint_without_accumulators_is_not_used(tmp_path: Path) -> None:
    cfg = config()
    batches = peer_batches(cfg, 30)
    live = engine(cfg)
    live.apply_many(batches)
    sd = state_with(cfg, tmp_path, batches)
    save_checkpoint(sd.checkpoint_dir, live.bundle.names, live.bundle.params,
                    live.applied_vector())  # as written before checkpoints kept the pool
    fresh = engine(cfg)
    log = sd.open_log()
    try:
        report, _ = recover(fresh, sd, log)
    finally:
        log.close()
    assert report.checkpoint_updates == 0
    assert report.replayed_updates == live.applied_vector().total()
    assert digest(fresh) == digest(live)
    assert rel(flat(live), flat(fresh)) <= 1e-6


def _wait(pred, what: str, deadline_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline_s
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_trainer_coalesces_a_backlog_and_checkpoints_the_pool(tmp_path: Path) -> None:
    cfg = config(size=16)
    batches = peer_batches(cfg, 80)
    total = sum(len(b) for b in batches)
    eng = engine(cfg)
    trainer = TrainerThread(eng, None, tmp_path, lambda b: None,
                            TrainerOptions(checkpoint_every=10**9))
    for b in batches:  # queued before the thread runs: one drain takes them all
        trainer.submit(b)
    trainer.start()
    try:
        _wait(lambda: eng.applied_vector().total() == total, "the backlog to be applied")
        _wait(lambda: trainer.pool_fingerprint is not None
              and trainer.pool_fingerprint.applied_vv_digest == eng.applied_vector().digest(),
              "a fresh pool fingerprint")
    finally:
        trainer.stop()
        trainer.join(10)
    assert trainer.error is None and trainer.drains == 1
    assert eng.stats.coalescing_ratio >= total / 16
    assert trainer.pool_fingerprint is not None
    assert trainer.pool_fingerprint.digest == digest(eng)
    assert eng.pool is not None
    assert trainer.pool_fingerprint.slots_used == sum(1 for c in eng.pool.counts if c)
    ckpt = load_latest(tmp_path)  # the final checkpoint, with the exact accumulators
    assert ckpt is not None and ckpt.blobs[POOL_BLOB] == eng.pool_state()


def test_trainer_refuses_a_bad_batch_and_goes_on(tmp_path: Path) -> None:
    cfg = config("importance", size=16)
    eng = engine(cfg)
    trainer = TrainerThread(eng, None, None, lambda b: None)
    good = UpdateBatch(PEERS[0], 0, b"\x10\x20", (1, 2))
    bad = UpdateBatch(PEERS[1], 0, b"\x10", (16,))  # outside the pool
    missing = UpdateBatch(PEERS[2], 0, b"\x10")  # no slot in an importance swarm
    for b in (good, bad, missing):
        trainer.submit(b)
    trainer.start()
    try:
        _wait(lambda: trainer.refused == 2, "the bad batches to be refused")
        trainer.submit(UpdateBatch(PEERS[0], 2, b"\x30", (3,)))
        _wait(lambda: eng.applied_vector().total() == 3, "later batches to be applied")
    finally:
        trainer.stop()
        trainer.join(10)
    assert trainer.error is None
    assert eng.applied_vector() == VersionVector({PEERS[0]: 3})


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_accumulators_from_codes_alone_match_the_swarms(sampling: str) -> None:
    cfg = config(sampling)
    batches = peer_batches(cfg, 50, seed=3)
    peer = engine(cfg)
    peer.apply_many(batches)
    # A joiner holding the same codes, per origin in one range each (any order).
    per_origin: dict[bytes, list[UpdateBatch]] = {}
    for b in batches:
        per_origin.setdefault(b.origin, []).append(b)
    joined = [UpdateBatch(o, 0, b"".join(b.codes for b in bs),
                          None if bs[0].slots is None else sum((b.slots or () for b in bs), ()))
              for o, bs in reversed(per_origin.items())]
    acc = pool_from_codes(peer, joined)
    assert acc.to_bytes() == peer.pool_snapshot()  # what the Accumulators RPC carries
    joiner = engine(cfg)
    regenerations = joiner.join_from_pool(acc.to_exact_bytes(), peer.applied_vector())
    assert regenerations <= cfg.zo.pool_size
    assert digest(joiner) == digest(peer)
    assert rel(flat(peer), flat(joiner)) <= 1e-6
    other = "uniform" if sampling == "importance" else "importance"
    with pytest.raises(ValueError, match="pool sampling"):
        pool_from_codes(engine(config(other)), joined)


def test_a_pool_snapshot_installs_with_its_accumulators(tmp_path: Path) -> None:
    cfg = config()
    peer = engine(cfg)
    peer.apply_many(peer_batches(cfg, 30))
    src, dst = tmp_path / "src", tmp_path / "dst"
    dst.mkdir()
    with_pool = save_checkpoint(src, peer.bundle.names, peer.bundle.params,
                                peer.applied_vector(), blobs={POOL_BLOB: peer.pool_state()})
    without = save_checkpoint(tmp_path / "old", peer.bundle.names, peer.bundle.params,
                              peer.applied_vector())
    joiner = engine(cfg)
    before = flat(joiner)
    received = shutil.copy(without, tmp_path / "incoming-1")
    with pytest.raises(ValueError, match="no seed-pool accumulators"):
        install_snapshot(joiner, Path(received), dst)
    assert torch.equal(flat(joiner), before) and not joiner.applied  # untouched
    received = shutil.copy(with_pool, tmp_path / "incoming-2")
    assert install_snapshot(joiner, Path(received), dst) == peer.applied_vector()
    assert digest(joiner) == digest(peer)
    assert torch.equal(flat(joiner), flat(peer))
    assert (dst / with_pool.name).exists()
