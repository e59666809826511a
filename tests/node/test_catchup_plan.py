"""``plan_catchup`` and friends: the catch-up choice as plain function calls."""

from __future__ import annotations

import pytest

from seedfl.core.version_vector import VersionVector
from seedfl.node.catchup_plan import (
    PROBE_AFTER_S,
    keep_snapshot,
    order_peers,
    plan_catchup,
    regenerations,
)

RATE = 1e9  # parameters per second


def plan(mode: str = "auto", missing: int = 100, pool_size: int = 0, pool_possible: bool = False,
         n_params: int = 1_000_000):
    return plan_catchup(mode, missing, pool_size=pool_size,  # type: ignore[arg-type]
                        pool_possible=pool_possible,
                        regens=regenerations(missing, pool_size, 64), n_params=n_params,
                        replay_params_per_s=RATE)


def test_nothing_missing_is_nothing_to_do() -> None:
    assert plan(missing=0).first == "none"


def test_short_replay_never_opens_a_snapshot() -> None:
    p = plan(missing=100)  # 100 x 1 M / 1 G/s = 0.1 s
    assert p.first == "replay" and p.replay_estimate_s == pytest.approx(0.1)


def test_long_replay_tries_a_snapshot_first() -> None:
    missing = int(PROBE_AFTER_S * RATE / 1_000_000) + 1
    assert plan(missing=missing).first == "snapshot"
    assert plan(missing=missing - 2).first == "replay"


@pytest.mark.parametrize("mode", ["replay", "snapshot", "pool"])
def test_explicit_modes(mode: str) -> None:
    got = plan(mode, missing=10, pool_size=8, pool_possible=True).first
    assert got == mode


def test_auto_pools_when_at_least_k_missing_and_possible() -> None:
    assert plan(missing=1024, pool_size=1024, pool_possible=True).first == "pool"
    assert plan(missing=1023, pool_size=1024, pool_possible=True).first == "replay"
    # An engine that already applied updates cannot pool-join: compares replay and snapshot.
    assert plan(missing=10**6, pool_size=1024, pool_possible=False).first == "snapshot"


def test_pool_regenerations_are_bounded_by_k_per_drain() -> None:
    assert regenerations(10_000, 0, 64) == 10_000
    assert regenerations(10_000, 16, 64) == 16 * 157  # 157 drains of <= 64
    assert regenerations(10, 16, 64) == 10


def test_keep_snapshot_only_auto_drops_a_slow_one() -> None:
    assert keep_snapshot("auto", 1.0, 2.0)
    assert not keep_snapshot("auto", 2.0, 2.0)
    assert keep_snapshot("snapshot", 50.0, 2.0)


def test_peers_holding_more_of_the_target_come_first() -> None:
    a, b = b"\x01" * 16, b"\x02" * 16
    target = VersionVector({a: 100, b: 50})
    peers = [(b"\x09" * 16, VersionVector({a: 10})),
             (b"\x08" * 16, VersionVector({a: 100, b: 50, b"\x07" * 16: 10**6})),
             (b"\x07" * 16, VersionVector({a: 100, b: 20})),
             (b"\x06" * 16, VersionVector({a: 10}))]
    assert order_peers(target, peers) == [b"\x08" * 16, b"\x07" * 16, b"\x06" * 16,
                                          b"\x09" * 16]
