"""Without a swarm secret the session still binds a stream to its Hello: a
stream speaks as the peer whose Hello opened its session, whatever the
metadata or the frames claim (in-process server on 127.0.0.1:0)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from seedfl.core.updates import UpdateBatch
from seedfl.net import convert
from seedfl.net.door import Door, plain_initiator
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.servicer import SESSION_METADATA, PeerServicer, build_server
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Session


class Recorder(Door):
    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[bytes, m.Frame]] = []

    async def gossip(self, session: Session,
                     inbound: AsyncIterator[m.Frame]) -> AsyncIterator[m.Frame]:
        async for frame in inbound:
            self.heard.append((session.peer.node_id, frame))
            yield m.Ack(0, 0.0)


async def _scenario() -> tuple[list[grpc.StatusCode], Recorder]:
    handler = Recorder()
    server = await build_server(PeerServicer(handler), "127.0.0.1:0")
    codes = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            hello = ch.unary_unary("/seedfl.v1.Peer/Hello")
            gossip = ch.stream_stream("/seedfl.v1.Peer/Gossip")
            # The member's id in the old metadata key opens nothing.
            call = gossip(metadata=(("seedfl-node-id", (b"\x02" * 16).hex()),), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await call.read()
            codes.append(await call.code())
            # A session as node 1, with node 2 named in metadata and a batch
            # with an empty origin (= "the stream's sender"): it is node 1's.
            raw = await hello(convert.hello_to_proto(plain_initiator(1).hello)
                              .SerializeToString(), timeout=5)
            reply = convert.hello_reply_from_proto(pb.HelloReply.FromString(raw))
            call = gossip(metadata=((SESSION_METADATA, reply.session.hex()),
                                    ("seedfl-node-id", (b"\x02" * 16).hex())), timeout=5)
            await call.write(pb.Frame(batch=pb.UpdateBatch(first_seq=0, codes=b"\x05"))
                             .SerializeToString())
            await call.read()
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
            codes.append(await call.code())
    finally:
        await server.stop(0.5)
    return codes, handler


def test_stream_speaks_only_as_the_peer_whose_hello_opened_its_session() -> None:
    codes, handler = asyncio.run(asyncio.wait_for(_scenario(), 20))
    assert codes == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK]
    assert handler.heard == [(b"\x01" * 16, m.Batch(UpdateBatch(b"\x01" * 16, 0, b"\x05")))]
