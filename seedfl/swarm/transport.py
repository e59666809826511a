"""Transports for the swarm state machines, and an in-memory network to simulate a swarm.

``Transport`` is all a node needs to send frames; the gRPC transport in
``seedfl/net`` implements it over Gossip streams. ``InMemoryNetwork`` connects
``SwarmPeer`` objects directly, driven by a ``ManualClock``: every frame is lost
with a given probability or delivered after a random delay (so frames also
overtake each other), partitions drop frames between groups, and links that
are down are redialled the way a node redials its peers. With
``follow_views`` the network also dials what each peer asks for
(``SwarmPeer.dial_candidates``), the way net/mesh.py does, so bounded active
views (swarm/views.py) shape the topology; ``links`` are then only the
bootstrap addresses. A close a peer asks for (``take_disconnects``) first
delivers the frames already sent on that link, as TCP delivers data before
its FIN. All randomness comes
from one seeded ``random.Random``, so a run is reproducible. The handshake is
modelled as reliable (it is a unary RPC with retries); frames are not.

This module knows the peer's public events and nothing of updates or states.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from seedfl.swarm.clock import ManualClock
from seedfl.swarm.handshake import HandshakeRefused
from seedfl.swarm.messages import Frame, Hello, Outgoing, Prove
from seedfl.swarm.peer import SwarmPeer


class Transport(Protocol):
    def send(self, peer_id: bytes, frame: Frame) -> None: ...


class InMemoryTransport:
    """One node's view of the network: ``send`` enqueues a frame from that node."""

    def __init__(self, network: InMemoryNetwork, src: bytes) -> None:
        self.network, self.src = network, src

    def send(self, peer_id: bytes, frame: Frame) -> None:
        self.network.send(self.src, peer_id, frame)


class InMemoryNetwork:
    def __init__(
        self, clock: ManualClock, rng: random.Random, loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.02), redial_interval: float = 1.0,
        follow_views: bool = False,
    ) -> None:
        self.clock, self.rng, self.loss, self.delay = clock, rng, loss, delay
        self.redial_interval = redial_interval
        self.follow_views = follow_views
        self.peers: dict[bytes, SwarmPeer] = {}
        self.links: set[frozenset[bytes]] = set()  # wanted connections
        self.connected: set[frozenset[bytes]] = set()
        self._groups: list[set[bytes]] | None = None
        self._queue: list[tuple[float, int, bytes, bytes, Frame]] = []
        self._order = itertools.count()
        self._last_dial: dict[frozenset[bytes], float] = {}
        self.counters: Counter[str] = Counter()

    def transport(self, node_id: bytes) -> InMemoryTransport:
        return InMemoryTransport(self, node_id)

    # -- topology -----------------------------------------------------------------

    def add(self, peer: SwarmPeer, links: Iterable[bytes] = ()) -> None:
        self.peers[peer.node_id] = peer
        for other in links:
            self.link(peer.node_id, other)

    def link(self, a: bytes, b: bytes) -> None:
        self.links.add(frozenset((a, b)))

    def remove(self, node_id: bytes, graceful: bool = False) -> None:
        """The node is gone (left or crashed): its streams close, its links go.
        ``graceful``: a process that exits after its Leave, whose frames in
        flight still arrive; otherwise a crash, whose frames in flight are lost."""
        for pair in sorted((p for p in self.connected if node_id in p), key=sorted):
            self._close(pair, graceful)
        self.links = {p for p in self.links if node_id not in p}
        del self.peers[node_id]

    def partition(self, groups: list[set[bytes]]) -> None:
        self._groups = groups

    def heal(self) -> None:
        self._groups = None

    def reachable(self, a: bytes, b: bytes) -> bool:
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    def connect(self, a: bytes, b: bytes) -> bool:
        """Handshake a→b; on success both peers learn of the connection."""
        pa, pb = self.peers[a], self.peers[b]
        hellos = self._handshake(pa, pb)
        if hellos is None:
            self.counters["handshakes_refused"] += 1
            return False
        ha, hb = hellos
        self.connected.add(frozenset((a, b)))
        self.dispatch(b, pb.connect(a, ha))
        self.dispatch(a, pa.connect(b, hb))
        # A view that overflowed drops a link now (the mesh does within one tick).
        for node, peer in ((a, pa), (b, pb)):
            for other in peer.take_disconnects():
                pair = frozenset((node, other))
                if pair in self.connected:
                    self._close(pair, graceful=True)
        return frozenset((a, b)) in self.connected

    @staticmethod
    def _handshake(pa: SwarmPeer, pb: SwarmPeer) -> tuple[Hello, Hello] | None:
        """a dials b: the Hellos of both when the handshake succeeds."""
        init, where = pa.initiate(), f"mem:{pa.node_id.hex()}"
        try:
            step = init.on_reply(pb.accept_hello(init.hello, where))
            if isinstance(step, Prove):
                step = init.on_proved(pb.accept_proof(step, where))
        except HandshakeRefused as exc:
            pa.refused(exc)
            return None
        # The session would carry the stream; frames here go peer to peer.
        pb.release(pb.authorize(step.token, where, stream=True).token)
        return init.hello, step.peer

    def _close(self, pair: frozenset[bytes], graceful: bool = False) -> None:
        if graceful and self._queue:
            # Frames in flight on this link arrive before it closes (TCP order).
            mine = [e for e in self._queue if frozenset((e[2], e[3])) == pair]
            if mine:
                self._queue = [e for e in self._queue if frozenset((e[2], e[3])) != pair]
                heapq.heapify(self._queue)
                for _, _, src, dst, frame in sorted(mine):
                    peer = self.peers.get(dst)
                    if peer is not None:
                        self.counters["delivered"] += 1
                        self.dispatch(dst, peer.receive(src, frame))
        self.connected.discard(pair)
        for node in pair:
            (other,) = pair - {node}
            if node in self.peers:
                self.dispatch(node, self.peers[node].disconnect(other))

    # -- frames -------------------------------------------------------------------

    def send(self, src: bytes, dst: bytes, frame: Frame) -> None:
        self.counters["sent"] += 1
        if frozenset((src, dst)) not in self.connected or not self.reachable(src, dst):
            self.counters["unroutable"] += 1
            return
        if self.rng.random() < self.loss:
            self.counters["lost"] += 1
            return
        at = self.clock.now() + self.rng.uniform(*self.delay)
        heapq.heappush(self._queue, (at, next(self._order), src, dst, frame))

    def dispatch(self, src: bytes, out: Iterable[Outgoing]) -> None:
        for dst, frame in out:
            self.send(src, dst, frame)

    def deliver_due(self) -> None:
        now = self.clock.now()
        while self._queue and self._queue[0][0] <= now:
            _, _, src, dst, frame = heapq.heappop(self._queue)
            peer = self.peers.get(dst)
            if peer is None or frozenset((src, dst)) not in self.connected:
                self.counters["dropped_closed"] += 1
                continue
            self.counters["delivered"] += 1
            self.dispatch(dst, peer.receive(src, frame))

    # -- time ---------------------------------------------------------------------

    def step(self, dt: float) -> None:
        """Advance time, deliver what is due, tick every peer, close and redial links."""
        self.clock.advance(dt)
        self.deliver_due()
        now = self.clock.now()
        for node_id, peer in list(self.peers.items()):
            self.dispatch(node_id, peer.tick())
            for other in peer.take_disconnects():
                pair = frozenset((node_id, other))
                if pair in self.connected:
                    self._close(pair, graceful=True)
            if self.follow_views and not peer.left:
                self._dial_views(node_id, peer, now)
        for pair in sorted(self.links - self.connected, key=sorted):  # reproducible order
            a, b = sorted(pair)
            if a not in self.peers or b not in self.peers or not self.reachable(a, b):
                continue
            if self.peers[a].left or self.peers[b].left:
                continue
            # With follow_views a bootstrap address is dialed by a side whose view
            # is short, if any.
            if self.follow_views and not self.peers[a].wants_links():
                if not self.peers[b].wants_links():
                    continue
                a, b = b, a
            if now - self._last_dial.get(pair, float("-inf")) >= self.redial_interval:
                self._last_dial[pair] = now
                self.connect(a, b)

    def _dial_views(self, node_id: bytes, peer: SwarmPeer, now: float) -> None:
        for other, _address in peer.dial_candidates():
            pair = frozenset((node_id, other))
            if other not in self.peers:
                self.counters["dials_failed"] += 1
                self.dispatch(node_id, peer.dial_failed(other))
                continue
            if pair in self.connected:
                continue
            if not self.reachable(node_id, other) or self.peers[other].left:
                continue
            if now - self._last_dial.get(pair, float("-inf")) >= self.redial_interval:
                self._last_dial[pair] = now
                self.counters["dials"] += 1
                self.connect(node_id, other)

    def run_until(
        self, predicate: Callable[[], bool], max_time: float, dt: float = 0.02,
    ) -> bool:
        """Step until predicate holds (True) or max_time of clock time passed (False)."""
        deadline = self.clock.now() + max_time
        while not predicate():
            if self.clock.now() >= deadline:
                return False
            self.step(dt)
        return True
