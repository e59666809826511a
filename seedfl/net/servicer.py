"""The gRPC server of one node: Peer service, health checking and reflection.

:class:`PeerServicer` owns no swarm logic. It parses and validates every
inbound message through :mod:`seedfl.net.convert` and hands domain values to a
:class:`PeerHandler`; a malformed message ends that RPC with INVALID_ARGUMENT
and is counted, and never reaches the handler (DESIGN §13). Gossip, Fetch,
Snapshot and Accumulators are served only to a call presenting a session
token (``seedfl-session`` metadata) that the handler's ``authorize`` accepts
for the caller's transport address; anything else ends with UNAUTHENTICATED,
counted as ``<rpc>_unauthenticated``, before the request is even parsed. Methods are
registered with raw-bytes deserializers so that undecodable bytes become
INVALID_ARGUMENT too, rather than a generic INTERNAL from grpc's own parsing.

:func:`build_server` creates a ``grpc.aio`` server inside the running loop with
the shared options, the Peer service, grpc.health.v1 and server reflection.
This module does not know the swarm protocol, the store or the trainer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, NoReturn, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from seedfl.core.updates import UpdateBatch
from seedfl.net import convert
from seedfl.net.convert import ConversionError, Limits, PoolState
from seedfl.net.options import DEFAULT, WireOptions
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.snapshot import (
    SnapshotChunk,
    SnapshotRequest,
    SnapshotUnavailable,
    chunk_to_proto,
    request_from_proto,
)
from seedfl.net.tls import TLSFiles
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Session

PEER_SERVICE = "seedfl.v1.Peer"
SESSION_METADATA = "seedfl-session"


class PoolUnavailable(Exception):
    """This node has no seed-pool accumulators to serve (the swarm uses no pool)."""


class PeerHandler(Protocol):
    """What the node implements behind the Peer service, in domain terms."""

    async def hello(self, hello: m.Hello, peer: str) -> m.HelloReply:
        """Answer a handshake; ``peer`` is grpc's description of the caller's
        transport address, to which the session is bound."""
        ...

    async def prove(self, request: m.Prove, peer: str) -> m.ProveReply:
        """Check the caller's proof for its session; answer with ours."""
        ...

    async def authorize(self, token: bytes, peer: str, stream: bool) -> Session:
        """The session this call presents; raises PermissionError(reason).
        ``stream``: the call is a Gossip stream (one per session)."""
        ...

    def release(self, token: bytes) -> None:
        """A session's Gossip stream ended."""
        ...

    def gossip(self, session: Session,
               inbound: AsyncIterator[m.Frame]) -> AsyncIterator[m.Frame]:
        """Run one Gossip stream for ``session.peer``: consume ``inbound``, yield
        frames to send back.

        ``inbound`` ends when the caller closes its side; the returned iterator
        ending closes ours. Cancellation means the stream is gone.
        """
        ...

    def fetch(self, session: Session,
              request: m.FetchRequest) -> AsyncIterator[UpdateBatch]:
        """The batches covering the requested ranges, as far as this node has
        them and ``session.peer`` may still make it serve."""
        ...

    def snapshot(self, request: SnapshotRequest) -> AsyncIterator[SnapshotChunk]:
        """Chunks of a snapshot dominating ``request.at_least``; raises
        SnapshotUnavailable (before the first chunk) when there is none."""
        ...

    async def accumulators(self) -> PoolState:
        """The seed-pool accumulators at this node's applied vector, taken
        consistently; raises PoolUnavailable when the swarm uses no pool."""
        ...


def _raw(data: bytes) -> bytes:
    return data


class PeerServicer:
    """Peer service over raw bytes: parse, validate, delegate, serialize."""

    def __init__(self, handler: PeerHandler, wire_bits: int = 8, limits: Limits | None = None,
                 self_id: bytes | None = None):
        """``self_id``: this node's id; our own batches then travel without origin."""
        self._handler = handler
        self._self_id = self_id
        self._wire_bits = wire_bits
        self._limits = limits or convert.DEFAULT_LIMITS
        self.rejected: Counter[str] = Counter()  # RPC name → malformed messages refused
        # Serialized Gossip message bytes over all inbound streams (our own
        # counters; gRPC and HTTP/2 framing are estimated by the node).
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0

    async def _refuse(self, context: grpc.aio.ServicerContext, rpc: str, reason: str) -> NoReturn:
        self.rejected[rpc] += 1
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: {reason}")
        raise AssertionError("unreachable: abort raises")

    async def _session(self, context: grpc.aio.ServicerContext, rpc: str,
                       stream: bool = False) -> Session:
        metadata = dict(context.invocation_metadata() or ())
        try:
            token = bytes.fromhex(str(metadata.get(SESSION_METADATA, "")))
        except ValueError:
            token = b""
        try:
            return await self._handler.authorize(token, context.peer(), stream)
        except PermissionError as exc:
            self.rejected[f"{rpc}_unauthenticated"] += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{rpc}: {exc}")
            raise AssertionError("unreachable: abort raises") from exc

    async def Hello(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            hello = convert.hello_from_proto(convert.parse(pb.HelloRequest, request), self._limits)
        except ConversionError as exc:
            await self._refuse(context, "Hello", exc.reason)
        reply = await self._handler.hello(hello, context.peer())
        out: bytes = convert.hello_reply_to_proto(reply).SerializeToString()
        return out

    async def Prove(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            prove = convert.prove_from_proto(convert.parse(pb.ProveRequest, request), self._limits)
        except ConversionError as exc:
            await self._refuse(context, "Prove", exc.reason)
        reply = await self._handler.prove(prove, context.peer())
        out: bytes = convert.prove_reply_to_proto(reply).SerializeToString()
        return out

    async def Gossip(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        session = await self._session(context, "Gossip", stream=True)
        try:
            async for data in self._gossip(session, request_iterator, context):
                yield data
        finally:
            self._handler.release(session.token)

    async def _gossip(self, session: Session, request_iterator: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        # The stream speaks as the session's peer, whatever its frames claim.
        peer_id = session.peer.node_id
        loop = asyncio.get_running_loop()
        bad: asyncio.Future[str] = loop.create_future()

        async def inbound() -> AsyncIterator[m.Frame]:
            async for raw in request_iterator:
                self.bytes_in += len(raw)
                self.messages_in += 1
                try:
                    frame = convert.decode_frame(raw, self._wire_bits, self._limits, peer_id)
                except ConversionError as exc:
                    if not bad.done():
                        bad.set_result(exc.reason)
                    return
                yield frame

        outbound = aiter(self._handler.gossip(session, inbound()))
        step: asyncio.Future[m.Frame] | None = None
        try:
            while True:
                # Wait for the handler's next frame or for malformed input,
                # whichever comes first: a handler blocked on its own queue
                # must not keep a stream open that already sent garbage.
                step = asyncio.ensure_future(anext(outbound))
                await asyncio.wait({step, bad},  # type: ignore[type-var]
                                   return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    break
                try:
                    frame = step.result()
                except StopAsyncIteration:
                    break
                data = convert.frame_to_proto(frame, self._wire_bits,
                                              self._self_id).SerializeToString()
                self.bytes_out += len(data)
                self.messages_out += 1
                yield data
        finally:
            if step is not None and not step.done():
                step.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
            aclose = getattr(outbound, "aclose", None)
            if aclose is not None:
                await aclose()
        if bad.done():
            await self._refuse(context, "Gossip", bad.result())

    async def Fetch(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        session = await self._session(context, "Fetch")
        try:
            req = convert.fetch_from_proto(convert.parse(pb.FetchRequest, request), self._limits)
        except ConversionError as exc:
            await self._refuse(context, "Fetch", exc.reason)
            return
        async for batch in self._handler.fetch(session, req):
            yield convert.batch_to_proto(batch, self._wire_bits).SerializeToString()

    async def Snapshot(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        await self._session(context, "Snapshot")
        try:
            req = request_from_proto(convert.parse(pb.SnapshotRequest, request), self._limits)
        except ConversionError as exc:
            await self._refuse(context, "Snapshot", exc.reason)
            return
        try:
            async for chunk in self._handler.snapshot(req):
                data = chunk_to_proto(chunk).SerializeToString()
                self.bytes_out += len(data)
                yield data
        except SnapshotUnavailable as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    async def Accumulators(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._session(context, "Accumulators")
        try:
            convert.parse(pb.AccumulatorsRequest, request)
        except ConversionError as exc:
            await self._refuse(context, "Accumulators", exc.reason)
        try:
            state = await self._handler.accumulators()
        except PoolUnavailable as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        data: bytes = convert.pool_state_to_proto(state).SerializeToString()
        self.bytes_out += len(data)
        return data

    def generic_handler(self) -> grpc.GenericRpcHandler:
        def ser(data: bytes) -> bytes:
            return data

        unary: Callable[..., Any] = grpc.unary_unary_rpc_method_handler
        stream: Callable[..., Any] = grpc.unary_stream_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            PEER_SERVICE,
            {
                "Hello": unary(self.Hello, _raw, ser),
                "Prove": unary(self.Prove, _raw, ser),
                "Gossip": grpc.stream_stream_rpc_method_handler(self.Gossip, _raw, ser),
                "Fetch": stream(self.Fetch, _raw, ser),
                "Snapshot": stream(self.Snapshot, _raw, ser),
                "Accumulators": unary(self.Accumulators, _raw, ser),
            },
        )


class Server:
    """A running grpc.aio server with its health servicer."""

    def __init__(self, server: grpc.aio.Server, health: HealthServicer, port: int) -> None:
        self.grpc = server
        self.health = health
        self.port = port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", PEER_SERVICE):
            await self.health.set(service, status)

    async def stop(self, grace: float = 2.0) -> None:
        """NOT_SERVING, then let open RPCs finish for ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)


async def build_server(
    servicer: PeerServicer,
    address: str = "127.0.0.1:0",
    options: WireOptions = DEFAULT,
    tls: TLSFiles | None = None,
    extra: Callable[[grpc.aio.Server], Awaitable[None] | None] | None = None,
    extra_names: Sequence[str] = (),
) -> Server:
    """Create, bind and start the server inside the running loop.

    ``extra`` may register more services (the Control service) before start;
    name them in ``extra_names`` so reflection lists them. Raises RuntimeError
    when the address cannot be bound.
    """
    server = grpc.aio.server(options=options.server_options())
    server.add_generic_rpc_handlers((servicer.generic_handler(),))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [PEER_SERVICE, *extra_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    if extra is not None:
        maybe = extra(server)
        if maybe is not None:
            await maybe
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:  # one port, TLS only: the control service is not left in plaintext
        port = server.add_secure_port(address, tls.server_credentials())
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}: address in use or not local")
    await server.start()
    wrapped = Server(server, health, port)
    await wrapped.set_serving(True)
    return wrapped
