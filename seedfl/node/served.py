"""What a node serves its peers: the handler behind the Peer service.

``Served`` implements ``net.servicer.PeerHandler``: handshakes, sessions,
Gossip and Fetch go to the node's ``Mesh``; Snapshot to ``SnapshotService``;
Accumulators to ``serve_accumulators``.

Why a handler that waits: the gRPC server must be bound before the node knows
its port, the node's Hello carries that port, and the mesh is built from the
Hello. So the server starts first with this handler, and calls that arrive
before ``attach(mesh)`` wait for it (snapshots need no mesh and do not).
This module does not know how any of those calls are answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from seedfl.core.updates import UpdateBatch
from seedfl.net.convert import PoolState
from seedfl.net.mesh import Mesh
from seedfl.net.snapshot import SnapshotChunk, SnapshotRequest
from seedfl.node.snapshot_service import SnapshotService
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Session

__all__ = ["Served"]


class Served:
    """The node's ``PeerHandler``; ``attach`` the mesh once it exists."""

    def __init__(self, snapshots: SnapshotService,
                 accumulators: Callable[[], Awaitable[PoolState]]) -> None:
        self._snapshots = snapshots
        self._accumulators = accumulators
        self._mesh: Mesh | None = None
        self._attached = asyncio.Event()

    def attach(self, mesh: Mesh) -> None:
        self._mesh = mesh
        self._attached.set()

    async def _ready(self) -> Mesh:
        await self._attached.wait()
        assert self._mesh is not None
        return self._mesh

    async def hello(self, hello: m.Hello, peer: str) -> m.HelloReply:
        return await (await self._ready()).hello(hello, peer)

    async def prove(self, request: m.Prove, peer: str) -> m.ProveReply:
        return await (await self._ready()).prove(request, peer)

    async def authorize(self, token: bytes, peer: str, stream: bool) -> Session:
        return await (await self._ready()).authorize(token, peer, stream)

    def release(self, token: bytes) -> None:
        if self._mesh is not None:  # no session can exist before the mesh
            self._mesh.release(token)

    async def gossip(self, session: Session,
                     inbound: AsyncIterator[m.Frame]) -> AsyncIterator[m.Frame]:
        mesh = await self._ready()
        async for frame in mesh.gossip(session, inbound):
            yield frame

    async def fetch(self, session: Session,
                    request: m.FetchRequest) -> AsyncIterator[UpdateBatch]:
        mesh = await self._ready()
        async for batch in mesh.fetch(session, request):
            yield batch

    async def snapshot(self, request: SnapshotRequest) -> AsyncIterator[SnapshotChunk]:
        async for chunk in self._snapshots.snapshot(request):
            yield chunk

    async def accumulators(self) -> PoolState:
        await self._attached.wait()
        return await self._accumulators()
