"""Catch-up against peers that fail: the fast tier, in-process, no sockets.

A joiner whose first peer claims ranges it never serves, or breaks off
mid-fetch, asks the next linked peer holding what is missing (issue 11), and
only when none serves does it train on what it has and report
``catchup_stalled_missing``. The node around ``CatchUp`` is a fake holding a
real ``UpdateStore``; the peers are fake connections serving batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net.connection import ConnectionClosed
from seedfl.node import catchup
from seedfl.node.catchup import CatchUp
from seedfl.swarm import messages as m

A = b"\x0a" * 16
X, Y, Z = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
CLAIMED = 50


class FakeEngine:
    pool = None
    applied = 0

    def __init__(self) -> None:
        self.vv = VersionVector()
        self.stats = SimpleNamespace(applied=100, apply_seconds=1e-3)

    def applied_vector(self) -> VersionVector:
        return self.vv


class FakeTrainer:
    """Applies what it is handed at once, in seq order (as the engine does)."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.error = engine, None
        self.options = SimpleNamespace(drain_updates=64)

    def submit(self, batch: UpdateBatch) -> None:
        assert batch.first_seq == self.engine.vv.get(batch.origin), "out of order"
        self.engine.vv = self.engine.vv.with_count(batch.origin, batch.end_seq)

    def is_alive(self) -> bool:
        return True


class FakeConn:
    """A peer serving ``serves`` updates of A's (of the CLAIMED it advertises)."""

    def __init__(self, serves: int, breaks: bool = False) -> None:
        self.serves, self.breaks, self.asked = serves, breaks, 0

    async def fetch(self, want: m.Want) -> AsyncIterator[UpdateBatch]:
        self.asked += 1
        for origin, lo, hi in want.ranges:
            hi = min(hi, self.serves)
            for seq in range(lo, hi, 10):
                yield UpdateBatch(origin, seq, bytes(min(10, hi - seq)))
                await asyncio.sleep(0)
        if self.breaks:
            raise ConnectionClosed("stream reset")

    async def close(self) -> None:
        pass


class FakeGossip:
    def __init__(self, store: UpdateStore) -> None:
        self.store, self.peers = store, {}

    def on_fetched(self, batch: UpdateBatch, want: m.Want, now: float) -> list[UpdateBatch]:
        return self.store.add(batch)


def _node(conns: dict[bytes, FakeConn]) -> SimpleNamespace:
    engine, store = FakeEngine(), UpdateStore()
    gossip = FakeGossip(store)
    gossip.peers = {pid: SimpleNamespace(vector=VersionVector({A: CLAIMED})) for pid in conns}
    addrs = {pid: pid.hex() for pid in conns}
    by_addr = {pid.hex(): conn for pid, conn in conns.items()}
    return SimpleNamespace(
        engine=engine, trainer=FakeTrainer(engine), store=store,
        swarm=SimpleNamespace(gossip=gossip),
        mesh=SimpleNamespace(peer_address=addrs.get, connection=by_addr.__getitem__),
        trainable=[SimpleNamespace(numel=lambda: 1000)],
        options=SimpleNamespace(catch_up="auto", peers=["x"]), phase="syncing")


def _run(conns: dict[bytes, FakeConn]) -> tuple[CatchUp, SimpleNamespace]:
    node = _node(conns)
    up = CatchUp(node)  # type: ignore[arg-type]
    asyncio.run(asyncio.wait_for(up._catch_up(X, VersionVector({A: CLAIMED})), 10))
    return up, node


@pytest.fixture(autouse=True)
def _short_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catchup, "STALL_AFTER_S", 0.2)


def test_a_first_peer_that_lies_is_replaced_by_one_that_serves() -> None:
    conns = {X: FakeConn(serves=20), Y: FakeConn(serves=CLAIMED)}
    up, node = _run(conns)
    assert node.engine.vv == VersionVector({A: CLAIMED})
    assert up.stats["peers_asked"] == 2.0 and "stalled_missing" not in up.stats
    assert conns[Y].asked == 1 and up.method == "replay"


def test_a_first_peer_that_breaks_off_is_replaced() -> None:
    conns = {X: FakeConn(serves=30, breaks=True), Y: FakeConn(serves=CLAIMED)}
    up, node = _run(conns)
    assert node.engine.vv == VersionVector({A: CLAIMED})
    assert up.stats["first_peer_failed"] == 1.0 and up.stats["peers_asked"] == 2.0


def test_peers_are_asked_until_none_is_left_then_the_node_trains() -> None:
    conns = {X: FakeConn(serves=20), Y: FakeConn(serves=30), Z: FakeConn(serves=25)}
    up, node = _run(conns)
    assert node.engine.vv == VersionVector({A: 30})  # the most anyone served
    assert up.stats["peers_asked"] == 3.0
    assert up.stats["stalled_missing"] == float(CLAIMED - 30)
    assert all(c.asked >= 1 for c in conns.values())


def test_no_second_peer_means_training_on_what_we_have() -> None:
    conns = {X: FakeConn(serves=20)}
    up, node = _run(conns)
    assert node.engine.vv == VersionVector({A: 20})
    assert up.stats["stalled_missing"] == float(CLAIMED - 20)
    assert "peers_asked" not in up.stats


def test_a_first_peer_gone_before_it_was_asked_is_skipped_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catchup, "STALL_AFTER_S", 5.0)
    conns = {X: FakeConn(serves=CLAIMED), Y: FakeConn(serves=CLAIMED)}
    node = _node(conns)
    node.mesh.peer_address = {Y: Y.hex()}.get  # X left after its Vector
    up = CatchUp(node)  # type: ignore[arg-type]
    began = time.monotonic()
    asyncio.run(asyncio.wait_for(up._catch_up(X, VersionVector({A: CLAIMED})), 10))
    assert node.engine.vv == VersionVector({A: CLAIMED})
    assert conns[X].asked == 0 and conns[Y].asked == 1
    assert time.monotonic() - began < catchup.STALL_AFTER_S  # no stall on the absent peer
