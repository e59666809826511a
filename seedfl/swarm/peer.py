"""The per-node swarm state machine: membership and gossip behind one door.

``SwarmPeer`` is sans-I/O in the h11 manner: the node tells it what happened
(a connection was accepted, a frame arrived, time passed, the trainer made
updates) and it answers with the frames to send, as ``(peer id, frame)``. It
hands updates that became contiguous to ``on_deliver`` (the trainer's inbound
queue) exactly once; our own published updates are never handed back.

A peer id is the peer's node id. ``connect`` is called only after the
handshake succeeded: the node dials with an ``initiate()``'d
``handshake.Initiator`` and answers Hello, Prove and every later call through
``accept_hello``, ``accept_proof`` and ``authorize`` (our ``handshake.Responder``).
Streams the node should close (peers that left, or dead and silent) are
listed by ``take_disconnects``; the node closes them and calls ``disconnect``.

This module knows no sockets, threads, event loop or tensors; time comes from
the ``Clock`` it is given.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.swarm import messages as m
from seedfl.swarm.clock import Clock
from seedfl.swarm.gossip import Gossip, GossipConfig
from seedfl.swarm.handshake import HandshakeRefused as HandshakeFailed
from seedfl.swarm.handshake import (
    Initiator,
    Responder,
    Session,
    SessionLimits,
    check_hello,
    new_nonce,
)
from seedfl.swarm.membership import Membership, MembershipConfig
from seedfl.swarm.messages import Outgoing
from seedfl.swarm.views import ViewConfig, Views


class HandshakeRefused(ValueError):
    """``connect`` was given a Hello that ``check`` refuses; the message names why."""


@dataclass(frozen=True)
class PeerConfig:
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    views: ViewConfig = field(default_factory=ViewConfig)


@dataclass(frozen=True)
class PeerRow:
    """One line of the peer table that Status shows."""

    node_id: bytes
    name: str
    address: str
    state: str
    incarnation: int
    connected: bool
    last_seen: float | None  # seconds ago, on our clock; None if never heard directly
    rtt: float | None
    updates_from: int
    lag: int | None  # their vector total minus ours; None before their first Vector


@dataclass(frozen=True)
class SwarmStats:
    counters: dict[str, int]
    rejected: dict[str, int]
    peers: tuple[PeerRow, ...]


class SwarmPeer:
    def __init__(
        self, hello: m.Hello, store: UpdateStore, on_deliver: Callable[[UpdateBatch], None],
        clock: Clock, config: PeerConfig | None = None, secret: bytes | None = None,
        code_valid: Callable[[int], bool] | None = None,
        sessions: SessionLimits | None = None,
    ) -> None:
        self.config = config or PeerConfig()
        self.clock = clock
        self.secret = secret
        self._hello = hello
        self.responder = Responder(secret, sessions)
        self.membership = Membership(hello.node_id, hello.name, hello.address,
                                     hello.incarnation, self.config.membership)
        self.gossip = Gossip(store, on_deliver, self.config.gossip, code_valid, hello.node_id)
        # Seeded by the node id: runs are reproducible, nodes choose differently.
        self.views = Views(self.config.views, random.Random(hello.node_id))
        self.counters: Counter[str] = Counter()
        self._drops: list[bytes] = []

    @property
    def node_id(self) -> bytes:
        return self._hello.node_id

    @property
    def left(self) -> bool:
        return self.membership.me.state == "left"

    def hello(self) -> m.Hello:
        """Our Hello for a new handshake: current incarnation and a fresh nonce."""
        return replace(self._hello, incarnation=self.membership.incarnation,
                       nonce=new_nonce())

    def check(self, theirs: m.Hello) -> str | None:
        """None when we may gossip with the sender of ``theirs``, else the reason
        (compatibility only; the secret is the session's business)."""
        reason = check_hello(self._hello, theirs)
        if reason is not None:
            self.counters["handshake_refused"] += 1
        return reason

    # -- sessions (handshake.py) ---------------------------------------------------

    def initiate(self) -> Initiator:
        """A handshake to dial with: our current Hello and our secret."""
        return Initiator(self.hello(), self.secret)

    def refused(self, exc: HandshakeFailed) -> None:
        """A handshake we dialed failed; counted when we were the side that refused."""
        if not exc.by_peer:
            self.counters["handshake_refused"] += 1

    def accept_hello(self, theirs: m.Hello, where: str) -> m.HelloReply:
        reply = self.responder.hello(self.hello(), theirs, where, self.clock.now())
        if not reply.accepted:
            self.counters["handshake_refused"] += 1
        return reply

    def accept_proof(self, request: m.Prove, where: str) -> m.ProveReply:
        reply = self.responder.prove(request, where, self.clock.now())
        if not reply.accepted:
            self.counters["handshake_refused"] += 1
        return reply

    def authorize(self, token: bytes, where: str, stream: bool = False) -> Session:
        """The session a call presents; raises PermissionError with the reason."""
        return self.responder.authorize(token, where, self.clock.now(), stream)

    def release(self, token: bytes) -> None:
        self.responder.release(token)

    # -- events --------------------------------------------------------------------

    def connect(self, peer_id: bytes, hello: m.Hello) -> list[Outgoing]:
        if peer_id != hello.node_id:
            raise HandshakeRefused("peer id does not match the node id of its Hello")
        reason = check_hello(self._hello, hello)
        if reason is not None:
            raise HandshakeRefused(reason)
        now = self.clock.now()
        out = self.membership.on_connect(hello, now)
        out += self.gossip.on_connect(peer_id, now)
        self.views.on_connect(peer_id, now)
        for dropped in self.views.to_drop(now):
            # Say so before closing, so that the peer does not suspect us for it.
            self.counters["view_drops"] += 1
            # And hand it our member table: if this link joined two young parts
            # of the swarm, the dropped side now knows the other part to dial.
            self.membership.expect_close(dropped)
            out += [(dropped, self.membership.table(now)), (dropped, m.Drop())]
            if dropped not in self._drops:
                self._drops.append(dropped)
        self._relay_mode()
        return out

    def disconnect(self, peer_id: bytes) -> list[Outgoing]:
        self.gossip.on_disconnect(peer_id)
        self.views.on_disconnect(peer_id)
        out = self.membership.on_disconnect(peer_id, self.clock.now())
        self._relay_mode()
        return out

    def _alive_others(self) -> int:
        return self.membership.alive_count()

    def _relay_mode(self) -> None:
        """Relay pushes while some alive member is not linked to us (GossipConfig.relay
        None: auto); in a full mesh every relayed push would be a duplicate."""
        alive = self._alive_others()
        partial = self.views.partial(alive)
        self.gossip.relaying = (self.config.gossip.relay if self.config.gossip.relay is not None
                                else partial)
        self.gossip.set_swarm_size(alive + 1)
        # A bounded view never links most members: not hearing one is no sign.
        self.membership.probe_unlinked = not partial

    def receive(self, peer_id: bytes, frame: m.Frame) -> list[Outgoing]:
        now = self.clock.now()
        if peer_id not in self.gossip.peers:
            self.counters["frames_from_unconnected"] += 1
            return []
        self.counters[f"frames_in_{type(frame).__name__.lower()}"] += 1
        out = self.membership.on_frame(peer_id, now)
        if isinstance(frame, m.Batch):
            out += self.gossip.on_batch(peer_id, frame, now)
        elif isinstance(frame, m.Vector):
            out += self.gossip.on_vector(peer_id, frame, now)
        elif isinstance(frame, m.Want):
            out += self.gossip.on_want(peer_id, frame, now)
        elif isinstance(frame, m.Membership):
            out += self.membership.on_membership(peer_id, frame, now)
        elif isinstance(frame, m.Ping):
            out += self.membership.on_ping(peer_id, frame, now)
        elif isinstance(frame, m.Ack):
            self.membership.on_ack(peer_id, frame, now)
        elif isinstance(frame, m.Leave):
            out += self.membership.on_leave(peer_id, frame, now)
        elif isinstance(frame, m.Drop):
            self.membership.expect_close(peer_id)
            self.views.on_dropped(peer_id, now)
        else:
            self.counters["frames_unknown"] += 1
        return self._count_out(out)

    def publish(self, batch: UpdateBatch) -> list[Outgoing]:
        """Our own new updates, already applied by the trainer."""
        if batch.origin != self.node_id:
            raise ValueError("publish takes this node's own updates")
        now = self.clock.now()
        self.gossip.publish(batch, now)
        return self._count_out(self.gossip.flush_due(now))

    def tick(self) -> list[Outgoing]:
        now = self.clock.now()
        out = self.membership.tick(now) + self.gossip.tick(now)
        self._relay_mode()
        for peer_id in self.membership.to_disconnect(now):
            if peer_id not in self._drops:
                self._drops.append(peer_id)
        return self._count_out(out)

    def leave(self) -> list[Outgoing]:
        """Push everything still waiting, then announce that we leave."""
        now = self.clock.now()
        out = self.gossip.flush_due(float("inf"))
        return self._count_out(out + self.membership.leave(now))

    def take_disconnects(self) -> list[bytes]:
        drops, self._drops = self._drops, []
        return drops

    def set_applied(self, digest: bytes, projection: float | None, total: int) -> None:
        """What the trainer has applied; travels in our Vector frames."""
        self.gossip.applied = (digest, projection, total)

    def dial_candidates(self, dialing: Collection[bytes] = ()) -> list[tuple[bytes, str]]:
        """Members to dial now, (id, address): alive ones we are not linked to, as
        many as the active view wants (swarm/views.py); ``dialing``: in flight."""
        if not self.views.short(self._alive_others(), len(dialing), self.clock.now()):
            return []  # the common case, kept O(1): the mesh asks every few ms
        members = {mem.node_id: mem.address for mem in self.membership.members()
                   if mem.state == "alive" and not mem.connected and mem.address
                   and mem.node_id != self.node_id}
        chosen = self.views.to_dial(members, self._alive_others(), dialing, self.clock.now())
        return [(p, members[p]) for p in chosen]

    def dial_failed(self, peer_id: bytes) -> list[Outgoing]:
        """A dial to member ``peer_id`` (from ``dial_candidates``) did not link."""
        return self._count_out(self.membership.on_dial_failed(peer_id, self.clock.now()))

    def wants_links(self, dialing: int = 0) -> bool:
        """Whether a persistent dial (static peer, discovered address) should try now."""
        return self.views.wants_links(dialing)

    # -- observation ---------------------------------------------------------------

    def stats(self) -> SwarmStats:
        now = self.clock.now()
        ours = self.gossip.store.version_vector().total()
        rows = []
        for mem in self.membership.members():
            replica = self.gossip.peers.get(mem.node_id)
            vector = replica.vector if replica else None
            rows.append(PeerRow(
                mem.node_id, mem.name, mem.address, mem.state, mem.incarnation, mem.connected,
                None if mem.last_seen is None else now - mem.last_seen, mem.rtt,
                replica.updates_from if replica else 0,
                None if vector is None else vector.total() - ours,
            ))
        counters = Counter(self.counters)
        counters.update(self.gossip.counters)
        counters.update({f"membership_{k}": v for k, v in self.membership.counters.items()})
        counters.update({f"session_{k}": v for k, v in self.responder.counters.items()})
        return SwarmStats(dict(counters), dict(self.gossip.rejected), tuple(rows))

    def _count_out(self, out: list[Outgoing]) -> list[Outgoing]:
        for _, frame in out:
            self.counters[f"frames_out_{type(frame).__name__.lower()}"] += 1
        return out
