"""The Accumulators RPC and the swarm's slot rule over a real grpc.aio server on
127.0.0.1:0: the reply carries the state bytes and its vector and nothing
more, a node without a pool answers FAILED_PRECONDITION, and a batch whose
slots break the swarm's pool sampling is refused with INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from netkit import Door, dial

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.connection import PeerConnection
from seedfl.net.convert import Limits, PoolState
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.servicer import PeerServicer, PoolUnavailable, build_server
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Session

ORIGIN = b"\x0a" * 16
K = 64
STATE = bytes(i % 251 for i in range(K * 4 + 52))  # any K·4 + 52 bytes
VV = VersionVector({ORIGIN: 1234, b"\x0b" * 16: 5})


class PoolHandler(Door):
    def __init__(self, pool: bool) -> None:
        super().__init__()
        self.pool = pool
        self.batches: list[UpdateBatch] = []

    async def gossip(self, session: Session,
                     inbound: AsyncIterator[m.Frame]) -> AsyncIterator[m.Frame]:
        async for frame in inbound:
            if isinstance(frame, m.Batch):
                self.batches.append(frame.batch)
                yield m.Ping(1, 0.0)

    async def fetch(self, session: Session,
                    request: m.FetchRequest) -> AsyncIterator[UpdateBatch]:
        return
        yield  # pragma: no cover

    async def snapshot(self, request: object) -> AsyncIterator[object]:
        return
        yield  # pragma: no cover

    async def accumulators(self) -> PoolState:
        if not self.pool:
            raise PoolUnavailable("this swarm does not use a seed pool")
        return PoolState(VV, STATE)


def _serve(pool: bool, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    handler = PoolHandler(pool)
    servicer = PeerServicer(handler, wire_bits=8, limits=limits)
    return handler, servicer


def test_accumulators_reply_is_the_state_plus_its_vector() -> None:
    async def main() -> None:
        _, servicer = _serve(True)
        server = await build_server(servicer, "127.0.0.1:0")
        try:
            async with PeerConnection(f"127.0.0.1:{server.port}",
                                      initiate=lambda: dial(1)) as conn:
                got, wire = await conn.accumulators()
        finally:
            await server.stop(0.5)
        assert got == PoolState(VV, STATE)
        # Framing beyond the state: the vector and two field headers (tag byte and
        # varint length: 1 + 2 for the 308-byte state, 1 + 1 for the vector).
        vv_bytes = convert.vv_to_proto(VV).ByteSize()
        expected = len(STATE) + 3 + vv_bytes + 2
        assert wire == expected == pb.PoolAccumulators(
            vv=convert.vv_to_proto(VV), state=STATE).ByteSize()
        assert servicer.bytes_out == wire

    asyncio.run(main())


def test_a_node_without_a_pool_says_so() -> None:
    async def main() -> None:
        _, servicer = _serve(False)
        server = await build_server(servicer, "127.0.0.1:0")
        try:
            async with PeerConnection(f"127.0.0.1:{server.port}",
                                      initiate=lambda: dial(1)) as conn:
                with pytest.raises(PoolUnavailable, match="does not use a seed pool"):
                    await conn.accumulators()
        finally:
            await server.stop(0.5)

    asyncio.run(main())


def test_batches_breaking_the_slot_rule_are_refused() -> None:
    async def main() -> None:
        handler, servicer = _serve(True, Limits(pool_slots=K))
        server = await build_server(servicer, "127.0.0.1:0")
        try:
            good = UpdateBatch(ORIGIN, 0, b"\x01\x02", (0, K - 1))
            async with PeerConnection(f"127.0.0.1:{server.port}") as conn:
                await conn.connect(dial(1))
                await conn.send(m.Batch(good))
                assert await anext(aiter(conn)) == m.Ping(1, 0.0)
            for bad in (UpdateBatch(ORIGIN, 2, b"\x01", (K,)), UpdateBatch(ORIGIN, 2, b"\x01")):
                async with PeerConnection(f"127.0.0.1:{server.port}") as conn:
                    await conn.connect(dial(2))
                    await conn.send(m.Batch(bad))
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        async for _ in conn:
                            pass
                    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert "slot" in (info.value.details() or "")
        finally:
            await server.stop(0.5)
        assert handler.batches == [good]
        assert servicer.rejected["Gossip"] == 2

    asyncio.run(main())
