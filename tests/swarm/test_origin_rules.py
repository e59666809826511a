"""Origin rules on the inbound path: nobody pushes our own updates to us, and
the number of origins a node keeps is capped (issue 11)."""

from __future__ import annotations

from swarmkit import MakeNode, node_id

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.swarm import messages as m
from seedfl.swarm.clock import ManualClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.peer import PeerConfig


def _pair(make_node: MakeNode, **gossip: int) -> tuple:  # type: ignore[type-arg]
    cfg = PeerConfig(gossip=GossipConfig(**gossip))  # type: ignore[arg-type]
    a, b = make_node(1, cfg), make_node(2, cfg)
    a.peer.connect(b.peer.node_id, b.peer.hello())
    b.peer.connect(a.peer.node_id, a.peer.hello())
    return a, b


def test_pushed_batch_for_our_own_origin_is_refused(make_node: MakeNode) -> None:
    a, b = _pair(make_node)
    a.peer.publish(a.produce(3))
    forged = UpdateBatch(a.peer.node_id, 3, b"\x05" * 4)  # seqs a never made
    a.peer.receive(b.peer.node_id, m.Batch(forged))
    assert a.store.version_vector().get(a.peer.node_id) == 3
    assert a.peer.stats().rejected == {"own_origin": 4}
    assert a.delivered == []
    # Our own updates bounced back are mere duplicates, not refusals.
    a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(a.peer.node_id, 0, b"\x07" * 3)))
    assert a.peer.stats().rejected == {"own_origin": 4}


def test_our_lost_tail_still_comes_back_by_pull(make_node: MakeNode,
                                                clock: ManualClock) -> None:
    a, b = _pair(make_node)
    # b holds 5 of a's updates that a's log lost (power cut): a asks, b answers.
    b.store.add(UpdateBatch(a.peer.node_id, 0, b"\x07" * 5))
    out = a.peer.receive(b.peer.node_id, m.Vector(VersionVector({a.peer.node_id: 5})))
    want = [f for _, f in out if isinstance(f, m.Want)]
    assert want == [m.Want(((a.peer.node_id, 0, 5),))]
    a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(a.peer.node_id, 0, b"\x07" * 5)))
    assert a.store.version_vector().get(a.peer.node_id) == 5
    assert a.peer.stats().rejected == {}


def test_new_origins_beyond_the_cap_are_refused(make_node: MakeNode) -> None:
    a, b = _pair(make_node, max_origins=3)
    for i in range(10, 15):
        a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(node_id(i), 0, b"\x05")))
    assert len(a.store.version_vector().items()) == 3
    assert a.peer.stats().rejected == {"origin_cap": 2}
    # Origins already kept still grow.
    a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(node_id(10), 1, b"\x05")))
    assert a.store.version_vector().get(node_id(10)) == 2


def test_swarm_max_origins_reaches_the_gossip_cap(make_node: MakeNode) -> None:
    from seedfl.core.config import parse_config

    cfg = parse_config('[model]\nname = "seedfl:tiny"\n[swarm]\nmax_origins = 2\n')
    a, b = _pair(make_node, max_origins=cfg.swarm.max_origins)
    a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(node_id(10), 0, b"\x05")))
    a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(node_id(11), 0, b"\x05")))
    a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(node_id(12), 0, b"\x05")))
    assert a.peer.stats().rejected == {"origin_cap": 1}


def test_catch_up_fetches_take_the_same_inbound_path(make_node: MakeNode) -> None:
    a, _b = _pair(make_node, max_origins=3)
    gossip = a.peer.gossip
    want = m.Want(((node_id(10), 0, 4), (a.peer.node_id, 0, 2)))
    # Inside what we asked: stored, not delivered (catch-up holds), counted.
    fresh = gossip.on_fetched(UpdateBatch(node_id(10), 0, b"\x05" * 4), want, 0.0)
    assert [len(r) for r in fresh] == [4] and a.delivered == []
    assert gossip.counters["received_updates"] == 4
    # Our own lost tail may come back this way: we asked for it.
    assert gossip.on_fetched(UpdateBatch(a.peer.node_id, 0, b"\x05" * 2), want, 0.0)
    # Beyond the asked range, or another origin: refused as unsolicited.
    assert gossip.on_fetched(UpdateBatch(node_id(10), 4, b"\x05"), want, 0.0) == []
    assert gossip.on_fetched(UpdateBatch(node_id(11), 0, b"\x05"), want, 0.0) == []
    # A new origin beyond the cap is refused even when asked for.
    wide = m.Want(((node_id(12), 0, 1), (node_id(13), 0, 1)))
    assert gossip.on_fetched(UpdateBatch(node_id(12), 0, b"\x05"), wide, 0.0)  # 3rd origin
    assert gossip.on_fetched(UpdateBatch(node_id(13), 0, b"\x05"), wide, 0.0) == []
    assert a.peer.stats().rejected == {"unsolicited": 2, "origin_cap": 1}
    assert a.store.version_vector().get(node_id(10)) == 4


def test_one_connection_pushing_for_many_origins_is_capped(make_node: MakeNode) -> None:
    # rate_cap 10/s, burst 1 s: each origin may push 10 at once, the connection 40.
    a, b = _pair(make_node, rate_cap=10, rate_burst=1)  # type: ignore[arg-type]
    for i in range(10, 20):  # ten origins, each within its own cap
        a.peer.receive(b.peer.node_id, m.Batch(UpdateBatch(node_id(i), 0, b"\x05" * 10)))
    assert a.store.version_vector().total() == 40
    assert a.peer.stats().rejected == {"conn_rate_cap": 60}


def test_what_one_peer_makes_us_serve_is_capped_pulls_and_fetches_together(
        make_node: MakeNode, clock: ManualClock) -> None:
    # serve_rate 100/s, burst 1 s: b may make a send 100 updates at once, then 100 a second.
    a, b = _pair(make_node, serve_rate=100, serve_burst=1)  # type: ignore[arg-type]
    a.peer.publish(UpdateBatch(a.peer.node_id, 0, b"\x05" * 1000))
    want = m.Want(((a.peer.node_id, 0, 1000),))
    sent = a.peer.gossip.counters["payload_bytes_out"]
    fetched = a.peer.gossip.serve_fetch(b.peer.node_id, want, clock.now())
    assert sum(len(x) for x in fetched) == 100
    assert a.peer.gossip.counters["payload_bytes_out"] - sent == 100  # served bytes are sent
    pulled = a.peer.receive(b.peer.node_id, want)  # the same budget: nothing left
    assert not [o for o in pulled if isinstance(o[1], m.Batch)]
    assert a.peer.stats().rejected["serve_rate_cap"] == 900 + 1000
    clock.advance(0.5)
    fetched = a.peer.gossip.serve_fetch(b.peer.node_id, want, clock.now())
    assert [(x.first_seq, len(x)) for x in fetched] == [(0, 50)]
    # Another peer has its own budget.
    c = make_node(3, PeerConfig(gossip=GossipConfig(serve_rate=100, serve_burst=1)))
    a.peer.connect(c.peer.node_id, c.peer.hello())
    assert sum(len(x) for x in a.peer.gossip.serve_fetch(c.peer.node_id, want,
                                                         clock.now())) == 100
