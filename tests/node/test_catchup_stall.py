"""A joiner whose peer claimed ranges it never serves stops waiting once no
progress toward the target is made for STALL_AFTER_S, even while peers' fresh
updates keep arriving, and says how many updates never came (issue 11)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from seedfl.core.version_vector import VersionVector
from seedfl.node import catchup
from seedfl.node.catchup import CatchUp

A, B, C = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16


class FakeEngine:
    def __init__(self) -> None:
        self.vv = VersionVector({A: 10})

    def applied_vector(self) -> VersionVector:
        return self.vv


def _catchup(engine: FakeEngine) -> CatchUp:
    up = CatchUp.__new__(CatchUp)  # only what _await_applied reads
    up.node = SimpleNamespace(engine=engine,  # type: ignore[assignment]
                              trainer=SimpleNamespace(error=None, is_alive=lambda: True))
    up.stats, up.progress = {}, 0.0
    return up


def test_stalled_catch_up_gives_up_and_counts_what_never_came(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catchup, "STALL_AFTER_S", 0.3)
    engine = FakeEngine()
    up = _catchup(engine)
    target = VersionVector({A: 10, B: 50})  # the peer claimed 50 of B's, serves 20

    async def main() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        waiter = asyncio.create_task(up._await_applied(target))
        for i in range(1, 21):  # B's 20 served updates trickle in
            engine.vv = engine.vv.merged(VersionVector({B: i}))
            await asyncio.sleep(0.02)
        fresh = 0
        while not waiter.done():  # C's fresh updates keep coming; B's 30 never do
            fresh += 1
            engine.vv = engine.vv.merged(VersionVector({C: fresh}))
            assert loop.time() - began < 5, "the catch-up never gave up"
            await asyncio.sleep(0.02)
        return loop.time() - began

    took = asyncio.run(main())
    assert up.stats["stalled_missing"] == 30.0
    assert 0.3 < took < 2.0


def test_a_complete_catch_up_is_not_called_stalled() -> None:
    engine = FakeEngine()
    up = _catchup(engine)
    engine.vv = VersionVector({A: 10, B: 5})
    asyncio.run(asyncio.wait_for(up._await_applied(VersionVector({A: 10, B: 5})), 5))
    assert "stalled_missing" not in up.stats
