"""Digest anti-entropy: whole vector on connect, capped deltas after, digest sync, retried pulls."""

from __future__ import annotations

from swarmkit import MakeNode, Node, node_id

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.swarm import messages as m
from seedfl.swarm.clock import ManualClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.peer import PeerConfig
from seedfl.swarm.vector_delta import Told

P, X, Y, Z = node_id(2), node_id(9), node_id(10), node_id(11)
CAP = 8
CFG = PeerConfig(gossip=GossipConfig(batch_window=0.0, vector_interval=1.0,
                                     vector_max_interval=1.0, vector_entries=CAP,
                                     want_timeout=1.0))


def test_told_names_changes_once_peer_origin_first_and_skips_what_the_peer_holds() -> None:
    told = Told()
    told.whole({X: 1})
    have = {X: 3, Y: 2, Z: 5, P: 4}
    for origin in (X, Y, Z, P):
        told.grew(origin)
    # The peer's own origin first, then oldest change first; Z the peer has.
    assert told.take(have, {Z: 5}, P, cap=2).items() == sorted([(P, 4), (X, 3)])
    assert told.take(have, {Z: 5}, P, cap=2).items() == [(Y, 2)]
    assert told.take(have, {}, P, cap=2).items() == []  # told, or held: nothing left
    told.grew(X)  # a count that did not go beyond what was told is not news
    assert told.take(have, {}, P, cap=2).items() == []
    have[X] = 4
    told.grew(X)
    assert told.take(have, {}, P, cap=2).items() == [(X, 4)]


def _linked(make_node: MakeNode) -> tuple[Node, Node, Node]:
    """a holds updates of many origins (pushed by c); b has just linked to a."""
    a, b, c = make_node(1, CFG), make_node(2, CFG), make_node(3, CFG)
    a.peer.connect(c.peer.node_id, c.peer.hello())
    for i in range(40):
        a.peer.receive(c.peer.node_id, m.Batch(UpdateBatch(node_id(100 + i), 0, b"\x07")))
    return a, b, c


def _vectors(out: list[m.Outgoing], to: bytes) -> list[m.Vector]:
    return [f for p, f in out if p == to and isinstance(f, m.Vector)]


def test_a_peer_gets_the_whole_vector_once_then_at_most_cap_changed_entries(
        make_node: MakeNode, clock: ManualClock) -> None:
    a, b, c = _linked(make_node)
    (first,) = _vectors(a.peer.connect(b.peer.node_id, b.peer.hello()), b.peer.node_id)
    b.peer.connect(a.peer.node_id, a.peer.hello())
    assert not first.partial and first.vv == a.store.version_vector()
    assert first.vv_digest == a.store.version_vector().digest()
    b.peer.receive(a.peer.node_id, first)
    # 20 more origins and a second update for 20 old ones: 40 changed entries.
    for i in range(20):
        a.peer.receive(c.peer.node_id, m.Batch(UpdateBatch(node_id(200 + i), 0, b"\x07")))
        a.peer.receive(c.peer.node_id, m.Batch(UpdateBatch(node_id(100 + i), 1, b"\x07")))
    sizes = []
    for _ in range(6):
        clock.advance(1.0)
        (vec,) = _vectors(a.peer.tick(), b.peer.node_id)
        assert vec.partial and vec.vv_digest == a.store.version_vector().digest()
        sizes.append(len(vec.vv.items()))
        b.peer.receive(a.peer.node_id, vec)
    assert sizes == [CAP] * 5 + [0]
    # b's copy of a's vector, merged from the deltas, is a's whole vector.
    assert b.peer.gossip.peers[a.peer.node_id].vector == a.store.version_vector()


def test_equal_digests_tell_a_peer_it_holds_everything_in_eight_bytes(
        make_node: MakeNode, clock: ManualClock) -> None:
    a, b, _ = _linked(make_node)
    for x, y in ((a, b), (b, a)):
        x.peer.connect(y.peer.node_id, y.peer.hello())
    for i in range(40):  # a pushes b everything it holds
        b.peer.receive(a.peer.node_id, m.Batch(UpdateBatch(node_id(100 + i), 0, b"\x07")))
    assert b.store.version_vector() == a.store.version_vector()
    a_view_of_b = a.peer.gossip.peers[b.peer.node_id]
    assert node_id(100) not in a_view_of_b.known
    # b has nothing to tell a (a pushed it all), so its delta is empty: the digest says it.
    clock.advance(1.0)
    (vec,) = _vectors(b.peer.tick(), a.peer.node_id)
    assert vec.partial and vec.vv.items() == []
    a.peer.receive(b.peer.node_id, vec)
    assert a.peer.gossip.counters["vectors_in_sync"] == 1
    assert a_view_of_b.vector == a.store.version_vector()
    assert all(a_view_of_b.known.get(o) == n for o, n in a.store.version_vector().items())


def test_a_want_whose_answer_was_lost_is_asked_again(make_node: MakeNode,
                                                     clock: ManualClock) -> None:
    a, b = make_node(1, CFG), make_node(2, CFG)
    for x, y in ((a, b), (b, a)):
        x.peer.connect(y.peer.node_id, y.peer.hello())
    b.peer.receive(a.peer.node_id, a.peer.gossip.vector())
    a.peer.gossip.store.add(UpdateBatch(X, 0, b"\x01\x02"))
    a.peer.gossip.have[X] = 2
    # a's vector shows X:2; b asks; the answer is lost on the way.
    (want,) = [f for _, f in b.peer.receive(a.peer.node_id, m.Vector(
        VersionVector({X: 2}), partial=True)) if isinstance(f, m.Want)]
    assert want.ranges == ((X, 0, 2),)
    clock.advance(0.5)
    assert [f for _, f in b.peer.tick() if isinstance(f, m.Want)] == []  # still in flight
    clock.advance(1.0)
    (again,) = [(p, f) for p, f in b.peer.tick() if isinstance(f, m.Want)]
    assert again == (a.peer.node_id, m.Want(((X, 0, 2),)))
    assert b.peer.gossip.counters["wants_retried"] == 1


def test_a_node_lacking_many_origins_pulls_them_all_from_one_whole_vector(
        make_node: MakeNode) -> None:
    a, b = make_node(1, CFG), make_node(2, CFG)
    origins = [node_id(100 + i) for i in range(200)]  # > 3 Wants' worth of ranges
    for o in origins:
        a.peer.gossip.store.add(UpdateBatch(o, 0, b"\x05"))
        a.peer.gossip.have[o] = 1
    for x, y in ((a, b), (b, a)):
        x.peer.connect(y.peer.node_id, y.peer.hello())
    # One whole Vector, then only what the two say to each other: no tick, no other Vector.
    inbox = [(b, a.peer.node_id, a.peer.gossip.vector())]
    wants = 0
    while inbox:
        dst, src, frame = inbox.pop(0)
        wants += isinstance(frame, m.Want)
        for to, out in dst.peer.receive(src, frame):
            if isinstance(out, (m.Want, m.Batch)):
                inbox.append((a if to == a.peer.node_id else b, dst.peer.node_id, out))
    assert all(b.store.version_vector().get(o) == 1 for o in origins)
    assert 200 / 64 <= wants <= 8  # a window of Wants refilled as answers came, not one per Vector
    assert b.peer.gossip.counters["wants_pipelined"] >= 3
