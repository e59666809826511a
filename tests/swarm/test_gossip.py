"""Gossip: push batching, clipping by known vectors, pull bounds, and every rejection."""

from __future__ import annotations

from swarmkit import MakeNode, Node, node_id

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.swarm import messages as m
from seedfl.swarm.clock import ManualClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.peer import PeerConfig

X = node_id(9)  # an origin that is not connected to anyone here


def pair(make_node: MakeNode, gossip: GossipConfig | None = None) -> tuple[Node, Node]:
    cfg = PeerConfig(gossip=gossip or GossipConfig())
    a, b = make_node(1, cfg), make_node(2, cfg)
    a.peer.connect(b.peer.node_id, b.peer.hello())
    b.peer.connect(a.peer.node_id, a.peer.hello())
    return a, b


def batches(out: list[m.Outgoing]) -> list[UpdateBatch]:
    return [f.batch for _, f in out if isinstance(f, m.Batch)]


def test_push_waits_for_the_window_and_coalesces(make_node: MakeNode,
                                                 clock: ManualClock) -> None:
    a, b = pair(make_node)
    assert batches(a.peer.publish(a.produce(1, code=1))) == []
    clock.advance(0.02)
    a.peer.publish(a.produce(2, code=2))
    clock.advance(0.02)
    assert batches(a.peer.tick()) == []
    clock.advance(0.011)
    sent = batches(a.peer.tick())
    assert sent == [UpdateBatch(a.peer.node_id, 0, bytes([1, 2, 2]))]
    b.peer.receive(a.peer.node_id, m.Batch(sent[0]))
    assert b.delivered == sent
    assert a.delivered == []  # own updates are never handed back to the trainer


def test_zero_window_pushes_at_once(make_node: MakeNode) -> None:
    a, _ = pair(make_node, GossipConfig(batch_window=0.0))
    assert batches(a.peer.publish(a.produce(3))) == [UpdateBatch(a.peer.node_id, 0, bytes([7]) * 3)]


def test_never_push_what_the_peer_vector_holds(make_node: MakeNode, clock: ManualClock) -> None:
    a, b = pair(make_node, GossipConfig(batch_window=0.0))
    first = a.produce(5)
    a.peer.publish(first)
    b.peer.receive(a.peer.node_id, m.Batch(first))
    b_vector = b.peer.gossip.vector()
    a.peer.receive(b.peer.node_id, b_vector)
    assert b_vector.vv.get(a.peer.node_id) == 5
    # A relayed copy of what b holds is not pushed back to b.
    b.peer.gossip.peers[a.peer.node_id].known.clear()
    c_batch = UpdateBatch(X, 0, b"\x01\x02")
    out_b = b.peer.receive(a.peer.node_id, m.Batch(c_batch))
    assert batches(out_b) == []
    assert batches(a.peer.publish(a.produce(2))) == [UpdateBatch(a.peer.node_id, 5, b"\x07\x07")]


def test_relayed_updates_reach_other_peers_but_not_the_sender(make_node: MakeNode,
                                                              clock: ManualClock) -> None:
    cfg = PeerConfig(gossip=GossipConfig(batch_window=0.0, relay=True))
    a, b, c = make_node(1, cfg), make_node(2, cfg), make_node(3, cfg)
    for x, y in ((a, b), (b, c)):
        x.peer.connect(y.peer.node_id, y.peer.hello())
        y.peer.connect(x.peer.node_id, x.peer.hello())
    batch = a.produce(4)
    a.peer.publish(batch)
    out = b.peer.receive(a.peer.node_id, m.Batch(batch))
    assert [(p, f.batch) for p, f in out if isinstance(f, m.Batch)] == [(c.peer.node_id, batch)]


def test_duplicates_are_counted_and_delivered_once(make_node: MakeNode) -> None:
    _, b = pair(make_node)
    batch = UpdateBatch(X, 0, b"\x01\x02\x03")
    for _ in range(3):
        b.peer.receive(node_id(1), m.Batch(batch))
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 2, b"\x03\x04")))
    assert b.delivered == [batch, UpdateBatch(X, 3, b"\x04")]
    stats = b.peer.stats().counters
    assert stats["duplicates"] == 7 and stats["received_updates"] == 4
    assert stats["payload_bytes_in"] == 11


def test_rate_cap_drops_excess_pushed_updates(make_node: MakeNode, clock: ManualClock) -> None:
    _, b = pair(make_node, GossipConfig(rate_cap=10.0, rate_burst=1.0))
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 0, bytes(30))))
    assert b.store.version_vector().get(X) == 10
    assert b.peer.stats().rejected == {"rate_cap": 20}
    clock.advance(0.5)  # five tokens come back
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 10, bytes(20))))
    assert b.store.version_vector().get(X) == 15
    assert b.peer.stats().rejected == {"rate_cap": 35}


def test_pulled_updates_are_not_rate_capped(make_node: MakeNode) -> None:
    _, b = pair(make_node, GossipConfig(rate_cap=10.0, rate_burst=1.0))
    b.peer.receive(node_id(1), m.Vector(VersionVector({X: 500})))
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 0, bytes(500))))
    assert b.store.version_vector().get(X) == 500
    assert b.peer.stats().rejected == {}


def test_seq_far_beyond_the_vector_is_rejected(make_node: MakeNode) -> None:
    _, b = pair(make_node, GossipConfig(max_gap=100))
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 101, b"\x01")))
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 100, b"\x01")))  # buffered, within gap
    assert b.peer.stats().rejected == {"gap": 1}
    assert b.store.stats.buffered == 1 and b.delivered == []


def test_oversized_and_invalid_codes_are_rejected(make_node: MakeNode) -> None:
    cfg = PeerConfig(gossip=GossipConfig(max_batch_updates=8))
    b = make_node(2, cfg, code_valid=lambda code: code != 0x80)
    b.peer.connect(node_id(1), make_node(1).peer.hello())
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 0, bytes(9))))
    b.peer.receive(node_id(1), m.Batch(UpdateBatch(X, 0, b"\x01\x80")))
    assert b.peer.stats().rejected == {"oversized": 9, "invalid_code": 2}
    assert b.store.version_vector().total() == 0


def test_frames_from_unconnected_peers_are_ignored(make_node: MakeNode) -> None:
    b = make_node(2)
    assert b.peer.receive(node_id(5), m.Batch(UpdateBatch(X, 0, b"\x01"))) == []
    assert b.store.version_vector().total() == 0
    assert b.peer.stats().counters["frames_from_unconnected"] == 1


def wants(out: list[m.Outgoing]) -> list[m.Range]:
    return [r for _, f in out if isinstance(f, m.Want) for r in f.ranges]


def test_want_is_bounded_and_not_repeated_while_in_flight(make_node: MakeNode,
                                                          clock: ManualClock) -> None:
    cfg = GossipConfig(max_want_updates=1000, want_timeout=2.0)
    _, b = pair(make_node, cfg)
    origins = [node_id(20 + i) for i in range(5)]
    theirs = m.Vector(VersionVector(dict.fromkeys(origins, 600)))
    first = wants(b.peer.receive(node_id(1), theirs))
    assert sum(e - s for _, s, e in first) == 1000
    assert all(s == 0 for _, s, _ in first)
    second = wants(b.peer.receive(node_id(1), theirs))
    asked = {(o, s, e) for o, s, e in first}
    assert sum(e - s for _, s, e in second) == 1000
    # Nothing asked twice while in flight: the second round asks other seqs.
    for o, s, e in second:
        for o2, s2, e2 in asked:
            assert o != o2 or e <= s2 or s >= e2
    clock.advance(2.5)
    # Timed out unanswered: asked again of the peer whose vector shows them, within
    # the same bound (a lossy network, or a peer that left).
    third = wants(b.peer.tick())
    assert sum(e - s for _, s, e in third) == 1000 and all(s == 0 for _, s, _ in third)


def test_want_answers_are_bounded_per_frame_and_in_total(make_node: MakeNode) -> None:
    cfg = GossipConfig(max_batch_updates=100, max_want_updates=250)
    a, _ = pair(make_node, cfg)
    a.peer.publish(a.produce(1000))
    out = a.peer.receive(node_id(2), m.Want(((a.peer.node_id, 0, 1000), (X, 0, 5))))
    sent = batches(out)
    assert [len(x) for x in sent] == [100, 100, 50]
    assert sent[0].first_seq == 0 and sent[-1].end_seq == 250
    assert a.peer.stats().rejected == {"want_truncated": 750}


def test_peer_table_shows_lag_and_updates_from(make_node: MakeNode) -> None:
    a, b = pair(make_node, GossipConfig(batch_window=0.0))
    for out in (a.peer.publish(a.produce(3)), a.peer.publish(a.produce(2))):
        for _, frame in out:
            b.peer.receive(a.peer.node_id, frame)
    a.peer.receive(b.peer.node_id, m.Vector(VersionVector({a.peer.node_id: 5, X: 4})))
    (row,) = a.peer.stats().peers
    assert (row.name, row.state, row.lag) == ("n2", "alive", 4)
    (row_b,) = b.peer.stats().peers
    assert row_b.updates_from == 5 and row_b.lag is None


def test_without_relay_a_pushed_update_is_not_pushed_on(make_node: MakeNode) -> None:
    cfg = PeerConfig(gossip=GossipConfig(batch_window=0.0))
    a, b, c = make_node(1, cfg), make_node(2, cfg), make_node(3, cfg)
    for x, y in ((a, b), (b, c)):
        x.peer.connect(y.peer.node_id, y.peer.hello())
        y.peer.connect(x.peer.node_id, x.peer.hello())
    batch = a.produce(4)
    a.peer.publish(batch)
    out = b.peer.receive(a.peer.node_id, m.Batch(batch))
    assert [f for _, f in out if isinstance(f, m.Batch)] == []
    # c still gets it by pull: b's vector shows it, c wants it, b answers.
    vector = b.peer.gossip.vector()
    wants = [f for _, f in c.peer.receive(b.peer.node_id, vector) if isinstance(f, m.Want)]
    assert wants == [m.Want(((a.peer.node_id, 0, 4),))]
    answer = b.peer.receive(c.peer.node_id, wants[0])
    assert [f.batch for _, f in answer if isinstance(f, m.Batch)] == [batch]


def _frames_per_update(make_node: MakeNode, clock: ManualClock, rate: float,
                       seconds: float) -> tuple[float, float]:
    """Own updates at ``rate``/s for ``seconds``: (updates per frame, worst delay)."""
    a, _ = pair(make_node)
    sent: list[tuple[float, UpdateBatch]] = []
    made: dict[int, float] = {}
    dt = 0.01
    every = max(1, round(1 / (rate * dt)))
    for t in range(int(seconds / dt)):
        out = a.peer.tick()
        if t % every == 0:
            made[a.own_seq] = clock.now()
            out += a.peer.publish(a.produce(1))
        sent += [(clock.now(), b) for b in batches(out)]
        clock.advance(dt)
    late = [(t, b) for t, b in sent if t > seconds / 2]  # the rate estimate has settled
    per_frame = sum(len(b) for _, b in late) / len(late)
    worst = max(t - made[b.first_seq] for t, b in late)
    return per_frame, worst


def test_the_window_adapts_to_fill_frames_within_its_latency_bound(
        make_node: MakeNode, clock: ManualClock) -> None:
    cfg = GossipConfig()
    # A slow node waits up to batch_max_window and puts its updates in one frame.
    per_frame, worst = _frames_per_update(make_node, clock, rate=5.0, seconds=8.0)
    assert 0.8 * 5.0 * cfg.batch_max_window <= per_frame <= 5.0 * cfg.batch_max_window + 1
    assert per_frame >= 6, per_frame
    assert worst <= cfg.batch_max_window + 0.02, worst
    # A busy one sends full frames of batch_target, long before the bound.
    per_frame, worst = _frames_per_update(make_node, clock, rate=100.0, seconds=3.0)
    assert 0.9 * cfg.batch_target <= per_frame <= cfg.batch_target, per_frame
    assert worst <= cfg.batch_target / 100.0 + 0.05, worst


def _exchange(a: Node, b: Node, out: list[m.Outgoing], drop: set[int] | None = None) -> int:
    """Deliver ``out`` (from a or b) to the other side until quiet; returns Vectors seen.
    ``drop``: seqs of a's origin that b loses (as if its rate cap refused them)."""
    vectors = 0
    while out:
        nxt: list[m.Outgoing] = []
        for dest, frame in out:
            if isinstance(frame, m.Vector):
                vectors += 1
            target, source = (b, a) if dest == b.peer.node_id else (a, b)
            if drop and isinstance(frame, m.Batch) and target is b and \
                    frame.batch.first_seq in drop:
                continue
            nxt += target.peer.receive(source.peer.node_id, frame)
        out = nxt
    return vectors


def test_in_sync_peers_skip_periodic_vectors_but_repair_a_dropped_push(
        make_node: MakeNode, clock: ManualClock) -> None:
    cfg = GossipConfig()
    a, b = pair(make_node)
    vectors, lost = 0, -1
    for step in range(int(60 / 0.1)):  # 60 s, both stepping at 2/s, frames delivered
        out = a.peer.tick() + b.peer.tick()
        if step % 5 == 0:
            out += a.peer.publish(a.produce(1)) + b.peer.publish(b.produce(1))
        drop = None
        if lost < 0 and any(isinstance(f, m.Batch) for _, f in out) and a.own_seq > 10:
            lost = next(f.batch.first_seq for d, f in out  # b loses this push of a's
                        if isinstance(f, m.Batch) and d == b.peer.node_id)
            drop = {lost}
        vectors += _exchange(a, b, out, drop)
        clock.advance(0.1)
    assert lost >= 0
    # Without the skip: 2 peers x 60 s / vector_interval = 24 vectors.
    assert vectors <= 2 * (60 / cfg.vector_max_interval + 1), vectors
    assert a.peer.gossip.counters["vectors_skipped"] >= 8
    # The lost push came back by pull (b's count of a's runs past it).
    assert b.store.version_vector().get(a.peer.node_id) > lost + 20


def test_a_settled_applied_state_is_announced_once_for_divergence(
        make_node: MakeNode, clock: ManualClock) -> None:
    cfg = GossipConfig()
    a, _ = pair(make_node)

    def vectors_in(seconds: float) -> list[m.Vector]:
        got: list[m.Vector] = []
        for _ in range(int(seconds / 0.1)):
            got += [f for _, f in a.peer.tick() if isinstance(f, m.Vector)]
            clock.advance(0.1)
        return got

    for i in range(8):  # training (20 s): the applied state changes at every check
        a.peer.gossip.applied = (bytes([i]) * 32, float(i), i)
        assert not vectors_in(cfg.vector_interval / 2)
    # It stops changing: one Vector carries it (a divergence measurement can
    # now be made), then silence until vector_max_interval.
    got = vectors_in(2 * cfg.vector_interval + 0.5)
    assert [v.applied_vv_digest for v in got] == [bytes([7]) * 32]
    assert not vectors_in(cfg.vector_max_interval - 3 * cfg.vector_interval)


def test_a_full_mesh_does_not_pull_what_a_linked_peer_is_pushing(
        make_node: MakeNode, clock: ManualClock) -> None:
    nodes = [make_node(i, PeerConfig()) for i in (1, 2, 3)]
    by_id = {n.peer.node_id: n for n in nodes}
    for x in nodes:
        for y in nodes:
            if x is not y:
                x.peer.connect(y.peer.node_id, y.peer.hello())

    def deliver(sender: Node, out: list[m.Outgoing]) -> None:
        queue = [(sender, dest, f) for dest, f in out]
        while queue:
            src, dest, frame = queue.pop(0)
            target = by_id[dest]
            queue += [(target, d, f) for d, f in target.peer.receive(src.peer.node_id, frame)]

    for step in range(int(40 / 0.05)):  # 40 s at 5 steps/s each
        for n in nodes:
            out = n.peer.tick()
            if step % 4 == 0:
                out += n.peer.publish(n.produce(1))
            deliver(n, out)
        clock.advance(0.05)
    made = sum(n.own_seq for n in nodes)
    dups = sum(n.peer.gossip.counters["duplicates"] for n in nodes)
    assert dups / made < 0.02, (dups, made)
    for n in nodes:  # and nothing is missing once the last windows flushed
        deliver(n, n.peer.gossip.flush_due(float("inf")))
    assert len({n.store.version_vector() for n in nodes}) == 1
