"""Bounded active views (swarm/views.py) and the swarm they shape.

Unit rules first (dial while short, the whole swarm when it fits, trim to the
bound keeping the newest link, cool-down), then peers on the in-memory
network with ``follow_views``: connections stay within the bound, a view drop
is announced (no suspicion, no refutation), and a lossy swarm with churn built
from one bootstrap address each still delivers everything to everyone.
"""

from __future__ import annotations

import random
from collections import Counter

from swarmkit import hello_of, node_id

from seedfl.bench.scale import ScaleRun, simulate
from seedfl.core.store import UpdateStore
from seedfl.swarm import messages as m
from seedfl.swarm.clock import ManualClock
from seedfl.swarm.peer import PeerConfig, SwarmPeer
from seedfl.swarm.transport import InMemoryNetwork
from seedfl.swarm.views import ViewConfig, Views


def ids(n: int, start: int = 1) -> list[bytes]:
    return [node_id(i) for i in range(start, start + n)]


def test_a_swarm_that_fits_in_the_view_is_dialed_whole() -> None:
    v = Views(ViewConfig(active_size=8, dial_target=4), random.Random(0))
    members = ids(8)
    assert v.to_dial(members, alive=8, dialing=(), now=0.0) == sorted(members)


def test_a_large_swarm_is_dialed_up_to_the_target_only() -> None:
    v = Views(ViewConfig(active_size=8, dial_target=4), random.Random(0))
    members = ids(100)
    first = v.to_dial(members, alive=100, dialing=(), now=0.0)
    assert len(first) == 4 and set(first) <= set(members)
    v.on_connect(first[0], 0.0)
    # One link and two dials in flight: one more.
    assert len(v.to_dial(members, alive=100, dialing=first[1:3], now=0.0)) == 1
    for p in first[1:]:
        v.on_connect(p, 0.0)
    assert v.to_dial(members, alive=100, dialing=(), now=0.0) == []
    assert not v.short(100, 0) and not v.wants_links()


def test_overflow_drops_a_random_other_link_and_cools_it() -> None:
    v = Views(ViewConfig(active_size=3, dial_target=2, cooldown=10.0), random.Random(1))
    peers = ids(4)
    for t, p in enumerate(peers):
        v.on_connect(p, float(t))
    dropped = v.to_drop(3.0)
    assert len(dropped) == 1 and dropped[0] != peers[-1]  # never the newest link
    assert len(v.active) == 3 and dropped[0] not in v.active
    v.on_disconnect(peers[0] if dropped[0] != peers[0] else peers[1])
    assert dropped[0] not in v.to_dial(peers + ids(10, 50), alive=14, dialing=(), now=5.0)
    assert dropped[0] in v.to_dial([dropped[0]], alive=2, dialing=(), now=13.1)


def test_unbounded_views_are_the_old_full_mesh() -> None:
    v = Views(ViewConfig(active_size=0), random.Random(0))
    members = ids(50)
    assert v.to_dial(members, alive=50, dialing=(), now=0.0) == sorted(members)
    for t, p in enumerate(members):
        v.on_connect(p, float(t))
    assert v.to_drop(99.0) == [] and v.wants_links()


def _swarm(n: int, size: int, target: int) -> tuple[InMemoryNetwork, dict[bytes, SwarmPeer]]:
    clock = ManualClock()
    net = InMemoryNetwork(clock, random.Random(3), follow_views=True)
    cfg = PeerConfig(views=ViewConfig(active_size=size, dial_target=target))
    peers: dict[bytes, SwarmPeer] = {}
    rng = random.Random(4)
    for i in range(n):
        peer = SwarmPeer(hello_of(i), UpdateStore(), lambda b: None, clock, cfg)
        boot = [rng.choice(list(peers))] if peers else []
        peers[peer.node_id] = peer
        net.add(peer, boot)
    return net, peers


def _degrees(net: InMemoryNetwork) -> Counter[bytes]:
    per: Counter[bytes] = Counter()
    for pair in net.connected:
        per.update(pair)
    return per


def _connected_graph(net: InMemoryNetwork, nodes: list[bytes]) -> bool:
    adj: dict[bytes, set[bytes]] = {p: set() for p in nodes}
    for pair in net.connected:
        a, b = tuple(pair)
        adj[a].add(b)
        adj[b].add(a)
    seen, todo = {nodes[0]}, [nodes[0]]
    while todo:
        for q in adj[todo.pop()] - seen:
            seen.add(q)
            todo.append(q)
    return len(seen) == len(nodes)


def test_peers_keep_within_the_bound_and_drops_cost_no_suspicion() -> None:
    net, peers = _swarm(30, size=5, target=3)
    worst = 0
    for _ in range(600):  # 12 s
        net.step(0.02)
        worst = max(worst, max(_degrees(net).values(), default=0))
    degrees = _degrees(net)
    assert worst <= 5
    assert all(3 <= degrees[p] <= 5 for p in peers), sorted(degrees.values())
    drops = sum(p.counters["view_drops"] for p in peers.values())
    assert drops > 0  # the bound was exercised
    assert all(p.membership.alive_count() == 29 for p in peers.values())
    assert _connected_graph(net, list(peers))  # one overlay, not two
    refuted = sum(p.membership.counters["refuted"] for p in peers.values())
    assert refuted == 0  # a Drop is announced: nobody suspected the dropper
    assert all(p.gossip.relaying for p in peers.values())  # partial views relay


def test_the_dropped_side_is_told_and_does_not_suspect() -> None:
    clock = ManualClock()
    a = SwarmPeer(hello_of(1), UpdateStore(), lambda b: None, clock, PeerConfig())
    b = SwarmPeer(hello_of(2), UpdateStore(), lambda b: None, clock, PeerConfig())
    a.connect(b.node_id, b.hello())
    b.connect(a.node_id, a.hello())
    assert b.receive(a.node_id, m.Drop()) == []
    b.disconnect(a.node_id)
    mem = b.membership.get(a.node_id)
    assert mem is not None and mem.state == "alive"
    # And b does not dial a straight back while it cools down.
    assert a.node_id in b.views._cooling


def test_a_lossy_churning_swarm_of_60_from_one_address_each_delivers_everything() -> None:
    run = ScaleRun(nodes=60, seed=5, measure_s=40.0, min_updates=150, churn=0.004,
                   join_s=10.0, settle_s=10.0, sample=150)
    r = simulate(run)
    assert r["complete"], r
    assert r["tracked_missing"] == 0 and r["tracked_updates"] >= 100
    assert r["joins"] > 0 and r["leaves"] > 0
    assert r["connections_per_node_max"] <= run.views.active_size
    assert r["frames_lost"] > 0.03 * r["frames_sent"]
    assert r["dissemination_p99_s"] is not None and r["dissemination_p99_s"] < 30.0
