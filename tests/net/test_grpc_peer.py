"""A grpc.aio server and a PeerConnection on 127.0.0.1:0: Hello, Gossip, Fetch,
health, reflection, and malformed input answered with INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from netkit import SWARM, Door, dial

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.connection import ConnectionClosed, HandshakeRefused, PeerConnection
from seedfl.net.convert import ConversionError, Limits
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.servicer import SESSION_METADATA, PeerServicer, Server, build_server
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Session

ORIGIN = b"\x0a" * 16


class EchoHandler(Door):
    """Accepts its own swarm; answers Ping with Ack and a Batch with a Vector."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[bytes, m.Frame]] = []

    async def gossip(
        self, session: Session, inbound: AsyncIterator[m.Frame]
    ) -> AsyncIterator[m.Frame]:
        peer_id = session.peer.node_id
        async for frame in inbound:
            self.received.append((peer_id, frame))
            if isinstance(frame, m.Ping):
                yield m.Ack(frame.nonce, frame.sent_at)
            elif isinstance(frame, m.Batch):
                b = frame.batch
                yield m.Vector(VersionVector({b.origin: b.end_seq}), applied_total=b.end_seq)

    async def fetch(self, session: Session,
                    request: m.FetchRequest) -> AsyncIterator[UpdateBatch]:
        for origin, start, end in request.ranges:
            yield UpdateBatch(origin, start, bytes(range(end - start)))


def run(scenario: Callable[[Server, PeerServicer, EchoHandler], Awaitable[None]]) -> None:
    async def main() -> None:
        handler = EchoHandler()
        servicer = PeerServicer(handler, wire_bits=8)
        server = await build_server(servicer, "127.0.0.1:0")
        try:
            await asyncio.wait_for(scenario(server, servicer, handler), 20)
        finally:
            await server.stop(0.5)

    asyncio.run(main())


def test_hello_gossip_and_fetch() -> None:
    async def scenario(server: Server, servicer: PeerServicer, handler: EchoHandler) -> None:
        async with PeerConnection(f"127.0.0.1:{server.port}") as conn:
            session = await conn.connect(dial(1))
            assert session.peer.node_id == b"\x09" * 16
            await conn.send(m.Ping(nonce=42, sent_at=1.25))
            await conn.send(m.Batch(UpdateBatch(ORIGIN, 0, b"\x01\x02\x03")))
            got = []
            async for frame in conn:
                got.append(frame)
                if len(got) == 2:
                    break
            assert got[0] == m.Ack(42, 1.25)
            assert got[1] == m.Vector(VersionVector({ORIGIN: 3}), applied_total=3)
            assert [p for p, _ in handler.received] == [b"\x01" * 16] * 2
            assert conn.bytes_out > 0 and conn.bytes_in > 0
            batches = [b async for b in conn.fetch(m.Want(((ORIGIN, 5, 9),)))]
            assert batches == [UpdateBatch(ORIGIN, 5, bytes([0, 1, 2, 3]))]
        assert servicer.rejected == {}

    run(scenario)


def test_refused_handshake_names_the_reason() -> None:
    async def scenario(server: Server, servicer: PeerServicer, handler: EchoHandler) -> None:
        conn = PeerConnection(f"127.0.0.1:{server.port}")
        with pytest.raises(HandshakeRefused, match="swarm key differs"):
            await conn.connect(dial(1, swarm=b"\x06" * 16))
        await conn.close()

    run(scenario)


def test_health_serving_and_reflection() -> None:
    async def scenario(server: Server, servicer: PeerServicer, handler: EchoHandler) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "seedfl.v1.Peer"):
                resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            async for resp in refl.ServerReflectionInfo(iter([req])):
                names = {s.name for s in resp.list_services_response.service}
                assert {"seedfl.v1.Peer", "grpc.health.v1.Health"} <= names
            await server.set_serving(False)
            resp = await health.Check(health_pb2.HealthCheckRequest(service="seedfl.v1.Peer"))
            assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING

    run(scenario)


def test_garbage_is_invalid_argument_and_server_survives() -> None:
    async def scenario(server: Server, servicer: PeerServicer, handler: EchoHandler) -> None:
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target) as ch:
            hello = ch.unary_unary("/seedfl.v1.Peer/Hello")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await hello(b"\xff\xff\xff\x07garbage", timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            short_id = pb.HelloRequest(swarm_key=SWARM, node_id=b"\x01").SerializeToString()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await hello(short_id, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "node id must be 16 bytes" in (info.value.details() or "")

            ok = convert.hello_to_proto(dial(1).hello).SerializeToString()
            reply = convert.hello_reply_from_proto(pb.HelloReply.FromString(await hello(ok)))
            session = ((SESSION_METADATA, reply.session.hex()),)
            gossip = ch.stream_stream("/seedfl.v1.Peer/Gossip")
            call = gossip(metadata=session, timeout=5)
            await call.write(pb.Frame(ping=pb.Ping(nonce=1)).SerializeToString())
            assert pb.Frame.FromString(await call.read()).ack.nonce == 1
            bad = pb.Frame(batch=pb.UpdateBatch(origin=ORIGIN, count=5, codes=b"\x01"))
            await call.write(bad.SerializeToString())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "count 5 but 1 code bytes" in (info.value.details() or "")

            nameless = gossip(timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await nameless.read()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

            # The session ended with its stream: Fetch needs a fresh one.
            reply = convert.hello_reply_from_proto(pb.HelloReply.FromString(await hello(ok)))
            session = ((SESSION_METADATA, reply.session.hex()),)
            fetch = ch.unary_stream("/seedfl.v1.Peer/Fetch")
            reversed_range = pb.FetchRequest(ranges=[pb.Range(origin=ORIGIN, start=9, end=3)])
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in fetch(reversed_range.SerializeToString(), timeout=5,
                                     metadata=session):
                    pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        assert servicer.rejected == {"Hello": 2, "Gossip": 1, "Gossip_unauthenticated": 1,
                                     "Fetch": 1}
        # Only the one valid frame reached the handler.
        assert [f for _, f in handler.received] == [m.Ping(1, 0.0)]
        async with PeerConnection(target) as conn:
            assert (await conn.connect(dial(2))).peer.node_id == b"\x09" * 16

    run(scenario)


def test_client_rejects_a_malformed_reply() -> None:
    async def scenario(server: Server, servicer: PeerServicer, handler: EchoHandler) -> None:
        # A client with a tiny seq bound sees the server's honest Vector (count
        # 3) as absurd: the reader gets ConversionError and the stream is cancelled.
        async with PeerConnection(f"127.0.0.1:{server.port}", limits=Limits(max_seq=2)) as conn:
            await conn.connect(dial(1))
            await conn.send(m.Batch(UpdateBatch(ORIGIN, 0, b"\x01\x02\x03")))
            with pytest.raises(ConversionError, match="beyond the sane bound"):
                async for _ in conn:
                    pass
            with pytest.raises(ConnectionClosed):
                await conn.send(m.Ping(nonce=1, sent_at=0.0))

    run(scenario)
