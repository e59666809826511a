"""The mesh: every live gRPC link of one node, driving its ``SwarmPeer``.

A link is one Gossip stream to one peer, either dialed by us
(``PeerConnection``) or accepted by our server (the ``gossip`` handler). Frames
the swarm wants to send to a peer go to the first open link of that peer;
frames read from any link go into ``swarm.receive``. The swarm hears
``connect`` when a peer's first link opens and ``disconnect`` when its last one
closes, so two nodes that dial each other at once are still one peer.

Dialing: static peers (``--peer``) and discovered addresses are redialed with
capped exponential backoff for as long as the node runs, unless the node behind
them is already linked; gossip-learned members are dialed while gossip says
they are alive. A refused handshake is logged with the peer's reason and
retried slowly (the operator may be fixing the config).

This module owns sockets and tasks, never tensors; it runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field

import grpc

from seedfl.core.updates import UpdateBatch
from seedfl.net.connection import ConnectionClosed, HandshakeRefused, PeerConnection
from seedfl.net.convert import ConversionError, Limits
from seedfl.net.options import DEFAULT, WireOptions
from seedfl.net.tls import TLSFiles
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Session
from seedfl.swarm.peer import SwarmPeer

log = logging.getLogger(__name__)

_TICK = 0.02
# A peer back from a partition is redialed within about _BACKOFF_MAX · 1.5 s.
_BACKOFF_MIN, _BACKOFF_MAX, _REFUSED_BACKOFF = 0.2, 4.0, 30.0
# A member that only gossip told us of gets this many attempts per round; each
# failed round doubles the wait before the next (up to _CANDIDATE_BACKOFF_MAX s),
# so a made-up or unreachable address costs a few dials an hour, not one every
# few seconds, until membership ages it out.
_CANDIDATE_TRIES, _CANDIDATE_BACKOFF_MAX = 3, 300.0
# Frames waiting for one link's writer. A peer that stops reading fills it (HTTP/2
# flow control stalls our writes); rather than buffer without end, the link is
# closed and the peer, if alive, redials and repairs by pull. 4096 frames is
# seconds of a busy link and a few MiB at most (frames are capped by convert).
LINK_QUEUE_FRAMES = 4096
# Per-message overhead beyond the serialized frame: gRPC's 5-byte length prefix
# and a 9-byte HTTP/2 DATA frame header (TCP/IP headers are not counted here).
FRAMING_BYTES = 14


@dataclass
class _Link:
    peer_id: bytes
    queue: asyncio.Queue[m.Frame | None] = field(default_factory=asyncio.Queue)
    closed: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Mesh:
    def __init__(self, swarm: SwarmPeer, *, wire_bits: int = 8,
                 options: WireOptions = DEFAULT, limits: Limits | None = None,
                 tls: TLSFiles | None = None) -> None:
        self.swarm = swarm
        self.tls = tls  # None: plaintext dials
        self.wire_bits = wire_bits
        self.options = options
        self.limits = limits  # None: convert's defaults
        self.malformed = 0  # links we dialed that ended on a malformed frame from the peer
        self.links: dict[bytes, list[_Link]] = {}
        self.hellos: dict[bytes, m.Hello] = {}
        self.connections: list[PeerConnection] = []
        self.refusals: dict[str, str] = {}  # address or peer → last refusal reason
        self.self_addresses: set[str] = set()  # static peers that turned out to be us
        self.dropped_frames = 0
        self.overflowed_links = 0  # links closed because their queue was full
        # gossip-learned member → (failed rounds, loop time before which it is not dialed)
        self._candidate_after: dict[bytes, tuple[int, float]] = {}
        self.bytes = {"in": 0, "out": 0, "messages_in": 0, "messages_out": 0}
        self._dialing: dict[str, asyncio.Task[None]] = {}
        self._dialing_ids: set[bytes] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- routing ---------------------------------------------------------------
    def route(self, out: list[m.Outgoing]) -> None:
        for peer_id, frame in out:
            links = [lk for lk in self.links.get(peer_id, []) if not lk.closed]
            if not links:
                self.dropped_frames += 1
                continue
            link = links[0]
            if link.queue.qsize() >= LINK_QUEUE_FRAMES:
                self.overflowed_links += 1
                log.warning("peer %s is not reading (%d frames queued): closing its link",
                            peer_id.hex()[:8], link.queue.qsize())
                self._close(link)
                continue
            link.queue.put_nowait(frame)

    def _open(self, peer_id: bytes, hello: m.Hello) -> _Link:
        link = _Link(peer_id)
        first = not self.links.get(peer_id)
        self.links.setdefault(peer_id, []).append(link)
        if first:
            self.route(self.swarm.connect(peer_id, hello))
        return link

    def _close(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        link.ended.set()
        link.queue.put_nowait(None)
        rest = [lk for lk in self.links.get(link.peer_id, []) if lk is not link]
        if rest:
            self.links[link.peer_id] = rest
        else:
            self.links.pop(link.peer_id, None)
            self.route(self.swarm.disconnect(link.peer_id))

    def linked(self, peer_id: bytes) -> bool:
        return bool(self.links.get(peer_id))

    # -- server side (PeerHandler) ---------------------------------------------
    async def hello(self, hello: m.Hello, peer: str) -> m.HelloReply:
        reply = self.swarm.accept_hello(hello, peer)
        if not reply.accepted and not reply.is_self:
            self._refused(peer, hello, reply.reason)
        return reply

    async def prove(self, request: m.Prove, peer: str) -> m.ProveReply:
        reply = self.swarm.accept_proof(request, peer)
        if not reply.accepted:
            self._refused(peer, None, reply.reason)
        return reply

    def _refused(self, peer: str, hello: m.Hello | None, reason: str) -> None:
        who = f" ({hello.name}, node {hello.node_id.hex()[:8]})" if hello is not None else ""
        log.warning("refused %s%s: %s", peer, who, reason)
        self.refusals[peer] = reason

    async def authorize(self, token: bytes, peer: str, stream: bool) -> Session:
        session = self.swarm.authorize(token, peer, stream)
        if stream:
            self.hellos[session.peer.node_id] = session.peer
        return session

    def release(self, token: bytes) -> None:
        self.swarm.release(token)

    async def gossip(self, session: Session,
                     inbound: AsyncIterator[m.Frame]) -> AsyncIterator[m.Frame]:
        hello, peer_id = session.peer, session.peer.node_id
        if self._closing:
            return
        link = self._open(peer_id, hello)

        async def read() -> None:
            try:
                async for frame in inbound:
                    self.route(self.swarm.receive(peer_id, frame))
            finally:
                self._close(link)

        reader = asyncio.create_task(read())
        try:
            while (frame := await link.queue.get()) is not None:
                yield frame
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
            self._close(link)

    async def fetch(self, session: Session,
                    request: m.FetchRequest) -> AsyncIterator[UpdateBatch]:
        now = self.swarm.clock.now()
        for batch in self.swarm.gossip.serve_fetch(session.peer.node_id, request, now):
            yield batch

    # -- client side -------------------------------------------------------------
    def dial(self, address: str, node_id: bytes | None = None, persistent: bool = True,
             tries: int | None = None) -> None:
        """Keep a link to ``address`` (unless the node behind it is already linked);
        ``tries``: give up after this many failed attempts (None: keep trying)."""
        if self._closing or address in self._dialing:
            return
        if node_id is not None and (node_id in self._dialing_ids or self.linked(node_id)):
            return
        task = asyncio.create_task(self._dialer(address, node_id, persistent, tries))
        self._dialing[address] = task
        if node_id is not None:
            self._dialing_ids.add(node_id)
        task.add_done_callback(lambda _t: self._forget(address, node_id))

    def _note_dial(self, node_id: bytes, ok: bool) -> None:
        """Back off a member we cannot reach; bounded like the member table."""
        if ok:
            self._candidate_after.pop(node_id, None)
            return
        rounds = self._candidate_after.get(node_id, (0, 0.0))[0] + 1
        wait = min(_CANDIDATE_BACKOFF_MAX, _BACKOFF_MAX * 2 ** min(rounds, 16))
        self._candidate_after[node_id] = (rounds, asyncio.get_running_loop().time() + wait)
        if len(self._candidate_after) > 4096:  # members are capped far below this
            self._candidate_after.pop(next(iter(self._candidate_after)))

    def _forget(self, address: str, node_id: bytes | None) -> None:
        self._dialing.pop(address, None)
        if node_id is not None:
            self._dialing_ids.discard(node_id)

    def _is_self(self, address: str) -> None:
        if address not in self.self_addresses:
            log.info("%s is this node itself; not dialing it again", address)
        self.self_addresses.add(address)

    async def _dialer(self, address: str, node_id: bytes | None, persistent: bool,
                      tries: int | None = None) -> None:
        delay = _BACKOFF_MIN
        failed = 0
        while not self._closing and address not in self.self_addresses:
            if node_id is not None and self.linked(node_id):
                if not persistent:
                    return
            elif persistent and not self.swarm.wants_links():
                pass  # the active view is full enough (swarm/views.py): try again later
            else:
                linked_ok = await self._session(address)
                if (linked_ok is None or linked_ok) and not persistent:
                    return  # a member dial is one link: after it, the view decides again
                failed = 0 if linked_ok else failed + 1
                if node_id is not None:
                    self._note_dial(node_id, bool(linked_ok))
                    if linked_ok is False and not persistent:
                        self.route(self.swarm.dial_failed(node_id))
                if tries is not None and failed >= tries:
                    return
                delay = _BACKOFF_MIN if linked_ok else min(delay * 2, _BACKOFF_MAX)
                if address in self.refusals:
                    delay = _REFUSED_BACKOFF
            await asyncio.sleep(delay * (0.5 + random.random()))

    async def _session(self, address: str) -> bool | None:
        """One connection attempt; True if a link ran, False if it failed, None if
        the node behind the address is already linked (or is us)."""
        conn = self.connection(address)
        try:
            theirs = (await conn.connect(self.swarm.initiate())).peer
        except HandshakeRefused as exc:
            if exc.is_self:
                self._is_self(address)
                return None
            self.swarm.refused(exc)
            reason = exc.reason
            if self.refusals.get(address) != reason:
                if exc.by_peer:
                    log.warning("peer %s refused us: %s", address, reason)
                else:
                    log.warning("refusing %s: %s", address, reason)
            self.refusals[address] = reason
            await conn.close()
            return False
        except (grpc.aio.AioRpcError, ConversionError, OSError) as exc:
            log.debug("dial %s failed: %s", address, exc)
            await conn.close()
            return False
        self.refusals.pop(address, None)
        if theirs.node_id == self.swarm.node_id or self.linked(theirs.node_id):
            await conn.close()
            if theirs.node_id == self.swarm.node_id:
                self._is_self(address)
            return None
        self.connections.append(conn)
        link = self._open(theirs.node_id, theirs)
        writer = asyncio.create_task(self._write(conn, link))
        reader = asyncio.create_task(self._read(conn, theirs.node_id, address))
        ended = asyncio.create_task(link.ended.wait())
        try:
            # A link the swarm dropped (peer declared dead behind a pulled
            # cable) must end the call too, or its TCP connection would hang
            # until keepalive gives up and no fresh dial would be made.
            await asyncio.wait({reader, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._close(link)
            for task in (writer, reader, ended):
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            self._account(conn)
            self.connections.remove(conn)
            await conn.close()
        return True

    def connection(self, address: str) -> PeerConnection:
        """A new (unconnected) client with this mesh's options, codec width and
        limits; its Fetch, Snapshot and Accumulators calls handshake first."""
        return PeerConnection(address, options=self.options, wire_bits=self.wire_bits, tls=self.tls,
                              limits=self.limits, initiate=self.swarm.initiate)

    async def _read(self, conn: PeerConnection, peer_id: bytes, address: str) -> None:
        try:
            async for frame in conn:
                self.route(self.swarm.receive(peer_id, frame))
        except ConversionError as exc:
            self.malformed += 1
            log.warning("link to %s ended: the peer sent a malformed frame (%s)", address, exc)
        except (grpc.aio.AioRpcError, ConnectionClosed) as exc:
            log.debug("link to %s ended: %s", address, exc)

    def peer_address(self, peer_id: bytes) -> str | None:
        """Where a linked peer listens (its Hello or gossip), for Fetch and Snapshot calls."""
        hello = self.hellos.get(peer_id)
        if hello is not None and hello.address:
            return hello.address
        for conn in self.connections:
            if conn.peer is not None and conn.peer.node_id == peer_id:
                return conn.target
        mem = self.swarm.membership.get(peer_id)
        return mem.address if mem is not None and mem.address else None

    async def _write(self, conn: PeerConnection, link: _Link) -> None:
        with suppress(ConnectionClosed):
            while (frame := await link.queue.get()) is not None:
                await conn.send(frame)

    def _account(self, conn: PeerConnection) -> None:
        self.bytes["in"] += conn.bytes_in
        self.bytes["out"] += conn.bytes_out
        self.bytes["messages_in"] += conn.messages_in
        self.bytes["messages_out"] += conn.messages_out

    def client_bytes(self) -> dict[str, int]:
        """Totals of closed connections plus the open ones."""
        out = dict(self.bytes)
        for conn in self.connections:
            out["in"] += conn.bytes_in
            out["out"] += conn.bytes_out
            out["messages_in"] += conn.messages_in
            out["messages_out"] += conn.messages_out
        return out

    # -- time and shutdown ---------------------------------------------------------
    async def run(self) -> None:
        """Tick the swarm, close what it drops, dial what gossip learned."""
        while not self._closing:
            self.route(self.swarm.tick())
            for peer_id in self.swarm.take_disconnects():
                for link in list(self.links.get(peer_id, [])):
                    self._close(link)
            now = asyncio.get_running_loop().time()
            for peer_id, address in self.swarm.dial_candidates(self._dialing_ids):
                if self._candidate_after.get(peer_id, (0, 0.0))[1] <= now:
                    self.dial(address, peer_id, persistent=False, tries=_CANDIDATE_TRIES)
            await asyncio.sleep(_TICK)

    async def leave(self, deadline: float) -> None:
        """Flush pending pushes and announce Leave; wait (bounded) for queues to drain."""
        self.route(self.swarm.leave())
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end and any(
            not lk.queue.empty() for links in self.links.values() for lk in links
        ):
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._dialing.values()):
            task.cancel()
        for links in list(self.links.values()):
            for link in list(links):
                self._close(link)
        for conn in list(self.connections):
            await conn.close()
        for task in list(self._dialing.values()):
            with suppress(asyncio.CancelledError):
                await task
