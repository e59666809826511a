"""The Snapshot RPC cannot be used to make a node write its model again and
again (issue 11): a request no checkpoint could satisfy is refused at once, and
at most one on-demand checkpoint is written per CHECKPOINT_ON_DEMAND_S."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from seedfl.core.version_vector import VersionVector
from seedfl.net.snapshot import SnapshotRequest, SnapshotUnavailable
from seedfl.node.snapshot_service import SnapshotService

A = b"\x01" * 16


def _service(checkpoints: list[int]) -> SnapshotService:
    def call(fn: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn())
        return fut

    trainer = SimpleNamespace(call=call, checkpoint=lambda: checkpoints.append(1))
    engine = SimpleNamespace(applied_vector=lambda: VersionVector({A: 100}))
    svc = SnapshotService(Path("unused"), engine, trainer)  # type: ignore[arg-type]
    svc.files = SimpleNamespace(newest=lambda: None)  # type: ignore[assignment]
    return svc


async def _ask(svc: SnapshotService, at_least: VersionVector) -> None:
    async for _ in svc.snapshot(SnapshotRequest(at_least)):
        pass


def test_unknown_vectors_are_refused_and_checkpoints_are_rate_limited() -> None:
    checkpoints: list[int] = []
    svc = _service(checkpoints)
    # A vector beyond what we applied: no checkpoint could serve it.
    with pytest.raises(SnapshotUnavailable):
        asyncio.run(_ask(svc, VersionVector({A: 10**6})))
    assert checkpoints == []
    # One we cover: one checkpoint (the fake writes no file, so still unavailable) ...
    for _ in range(20):
        with pytest.raises(SnapshotUnavailable):
            asyncio.run(_ask(svc, VersionVector({A: 50})))
    # ... and the other 19 within the interval write nothing.
    assert checkpoints == [1]
    assert svc.refused_checkpoints == 20
