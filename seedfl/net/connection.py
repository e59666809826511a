"""One outgoing connection to a peer: dial, Hello, Gossip stream, Fetch, Snapshot,
Accumulators.

:class:`PeerConnection` dials ``host:port`` with the shared options, runs
the handshake (Hello, and Prove when a side has a secret, each under its
deadline) with the ``handshake.Initiator`` it is given, then opens the
bidirectional Gossip stream presenting the session token in metadata; Fetch,
Snapshot and Accumulators present it too, handshaking first (with
``initiate``) when the connection has no session yet. ``send(frame)`` writes a frame (raising
:class:`ConnectionClosed` once the stream is gone); iterating
the connection yields the frames the peer sends, validated by
:mod:`seedfl.net.convert`. A malformed frame from the peer cancels the stream
and raises :class:`ConversionError` to the reader. ``close()`` half-closes,
cancels and closes the channel; it is safe to call more than once.

Everything must be created inside the running loop. Whether a handshake is
acceptable is the Initiator's verdict; this module does not retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

import grpc

from seedfl.core.updates import UpdateBatch
from seedfl.net import convert
from seedfl.net.convert import ConversionError, Limits, PoolState
from seedfl.net.options import DEFAULT, WireOptions
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.servicer import PEER_SERVICE, SESSION_METADATA, PoolUnavailable
from seedfl.net.snapshot import (
    SnapshotChunk,
    SnapshotRequest,
    SnapshotUnavailable,
    chunk_from_proto,
    request_to_proto,
)
from seedfl.net.tls import TLSFiles
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import HandshakeRefused, Initiator, Session

__all__ = ["ConnectionClosed", "HandshakeRefused", "PeerConnection"]


class ConnectionClosed(ConnectionError):
    """The Gossip stream is gone (closed, cancelled, failed or never opened)."""


def _method(name: str) -> str:
    return f"/{PEER_SERVICE}/{name}"


class PeerConnection:
    """Client side of one peer link (see module docstring)."""

    def __init__(
        self,
        target: str,
        *,
        options: WireOptions = DEFAULT,
        wire_bits: int = 8,
        limits: Limits | None = None,
        tls: TLSFiles | None = None,
        initiate: Callable[[], Initiator] | None = None,
    ) -> None:
        """``initiate``: a fresh handshake, for calls made before ``connect``."""
        self.target = target
        self._initiate = initiate
        self._options = options
        self._wire_bits = wire_bits
        self._limits = limits or convert.DEFAULT_LIMITS
        opts = options.channel_options()
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.aio.secure_channel(
                target, tls.channel_credentials(), options=[*opts, *tls.channel_options()])
        # Raw bytes in and out: convert does all parsing, so malformed input
        # surfaces as ConversionError rather than a grpc-internal failure.
        self._hello = self._channel.unary_unary(_method("Hello"))
        self._prove = self._channel.unary_unary(_method("Prove"))
        self._gossip = self._channel.stream_stream(_method("Gossip"))
        self._fetch = self._channel.unary_stream(_method("Fetch"))
        self._snapshot = self._channel.unary_stream(_method("Snapshot"))
        self._accumulators = self._channel.unary_unary(_method("Accumulators"))
        self._call: grpc.aio.StreamStreamCall | None = None
        self.peer: m.Hello | None = None
        self.session: Session | None = None
        self._self_id: bytes | None = None
        self.bytes_out = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.messages_in = 0

    async def handshake(self, initiator: Initiator) -> Session:
        """Hello (and Prove), leaving the session for later calls. Raises
        HandshakeRefused, ConversionError (malformed reply) or AioRpcError."""
        deadline = self._options.deadlines.hello
        raw = await self._hello(convert.hello_to_proto(initiator.hello).SerializeToString(),
                                timeout=deadline)
        step = initiator.on_reply(
            convert.hello_reply_from_proto(convert.parse(pb.HelloReply, raw), self._limits))
        if isinstance(step, m.Prove):
            raw = await self._prove(convert.prove_to_proto(step).SerializeToString(),
                                    timeout=deadline)
            step = initiator.on_proved(
                convert.prove_reply_from_proto(convert.parse(pb.ProveReply, raw), self._limits))
        self.session, self.peer, self._self_id = step, step.peer, initiator.hello.node_id
        return step

    async def connect(self, initiator: Initiator | None = None) -> Session:
        """Handshake, then open the Gossip stream (see ``handshake``); without an
        ``initiator``, the one ``initiate`` makes."""
        if initiator is None:
            if self._initiate is None:
                raise RuntimeError("connect() needs an Initiator or initiate=")
            initiator = self._initiate()
        try:
            session = await self.handshake(initiator)
        except HandshakeRefused:
            await self.close()
            raise
        self._call = self._gossip(metadata=self._metadata(),
                                  timeout=self._options.deadlines.gossip)
        return session

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SESSION_METADATA, self.session.token.hex()),) if self.session else ()

    async def _authenticated(self) -> tuple[tuple[str, str], ...]:
        if self.session is None and self._initiate is not None:
            await self.handshake(self._initiate())
        return self._metadata()

    async def send(self, frame: m.Frame) -> None:
        """Write one frame; waits for flow control. Raises ConnectionClosed."""
        call = self._call
        if call is None or call.done():
            raise ConnectionClosed(f"no open gossip stream to {self.target}")
        data = convert.frame_to_proto(frame, self._wire_bits, self._self_id).SerializeToString()
        try:
            await call.write(data)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            raise ConnectionClosed(f"gossip stream to {self.target} ended: {exc}") from exc
        self.bytes_out += len(data)
        self.messages_out += 1

    async def __aiter__(self) -> AsyncIterator[m.Frame]:
        """Frames from the peer until it closes its side.

        Raises grpc.aio.AioRpcError when the stream fails, ConversionError
        (after cancelling the stream) when the peer sends something malformed.
        """
        if self._call is None:
            raise RuntimeError("iterating before connect()")
        call = self._call
        sender = self.peer.node_id if self.peer is not None else None
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            assert isinstance(raw, bytes)
            self.bytes_in += len(raw)
            self.messages_in += 1
            try:
                frame = convert.decode_frame(raw, self._wire_bits, self._limits, sender)
            except ConversionError:
                call.cancel()
                raise
            yield frame

    async def fetch(self, request: m.FetchRequest) -> AsyncIterator[UpdateBatch]:
        """Stream the batches the peer holds for these ranges."""
        call = self._fetch(
            convert.fetch_to_proto(request).SerializeToString(),
            timeout=self._options.deadlines.fetch, metadata=await self._authenticated(),
        )
        try:
            async for raw in call:
                msg = convert.parse(pb.UpdateBatch, raw)
                yield convert.batch_from_proto(msg, self._wire_bits, self._limits)
        finally:
            call.cancel()

    async def snapshot(self, request: SnapshotRequest) -> AsyncIterator[SnapshotChunk]:
        """Stream a snapshot's chunks. Raises SnapshotUnavailable when the peer
        has none that dominates ``request.at_least``."""
        call = self._snapshot(request_to_proto(request).SerializeToString(),
                              timeout=self._options.deadlines.snapshot,
                              metadata=await self._authenticated())
        try:
            async for raw in call:
                yield chunk_from_proto(convert.parse(pb.SnapshotChunk, raw), self._limits)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise SnapshotUnavailable(exc.details() or "no snapshot") from None
            raise
        finally:
            call.cancel()

    async def accumulators(self) -> tuple[PoolState, int]:
        """The peer's seed-pool accumulators and the size of the reply message
        in bytes. Raises PoolUnavailable when the peer has none (no pool), and
        ConversionError when the reply is malformed."""
        metadata = await self._authenticated()
        try:
            raw = await self._accumulators(pb.AccumulatorsRequest().SerializeToString(),
                                           timeout=self._options.deadlines.accumulators,
                                           metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise PoolUnavailable(exc.details() or "no seed pool") from None
            raise
        assert isinstance(raw, bytes)
        msg = convert.parse(pb.PoolAccumulators, raw)
        return convert.pool_state_from_proto(msg, self._limits), len(raw)

    async def close(self) -> None:
        """Half-close the stream, cancel it, close the channel. Idempotent."""
        call, self._call = self._call, None
        if call is not None and not call.done():
            # A stream that already failed cannot half-close; cancelling is all that is left.
            with suppress(grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError):
                await call.done_writing()
            call.cancel()
        await self._channel.close()

    async def __aenter__(self) -> PeerConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
