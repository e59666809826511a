"""``swarm.max_staleness`` over the in-memory swarm: a fast node and a slow one
(and a relay that trains nothing). With N = 3 the fast node never gets more
than 3 own updates ahead of the slow one's count as it holds it, it does make
progress, and without the bound it runs far ahead. When the slow node leaves,
the fast one is free again."""

from __future__ import annotations

import random

from swarmkit import MakeNode, Node

from seedfl.swarm.clock import ManualClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.membership import MembershipConfig
from seedfl.swarm.peer import PeerConfig
from seedfl.swarm.staleness import must_wait, staleness_floor
from seedfl.swarm.transport import InMemoryNetwork

CONFIG = PeerConfig(
    membership=MembershipConfig(ping_interval=0.5, suspect_after=2.0, dead_after=3.0,
                                gossip_interval=1.0),
    # batch_target=1: a node under max_staleness pushes at once (node/runtime.py),
    # since its peers wait on its updates.
    gossip=GossipConfig(batch_window=0.01, batch_target=1, vector_interval=1.0,
                        want_timeout=1.0),
)
DT = 0.02


def _floor(node: Node) -> int | None:
    return staleness_floor(node.peer.node_id, node.store.version_vector(),
                           node.peer.membership.members())


def _run(make_node: MakeNode, clock: ManualClock, n: int, seconds: float,
         ) -> tuple[InMemoryNetwork, Node, Node, list[int]]:
    net = InMemoryNetwork(clock, random.Random(3), delay=(0.005, 0.03))
    fast, slow, relay = (make_node(i, CONFIG) for i in range(3))
    for i, node in enumerate((fast, slow, relay)):
        net.add(node.peer, [x.peer.node_id for x in (fast, slow, relay)[:i]])
    assert net.run_until(lambda: len(net.connected) == 3, max_time=5.0)
    leads: list[int] = []
    ticks = int(seconds / DT)
    for t in range(ticks):
        # fast: an update every tick it may; slow: one every 10 ticks.
        if not must_wait(fast.own_seq, _floor(fast), n):
            net.dispatch(fast.peer.node_id, fast.peer.publish(fast.produce()))
        if t % 10 == 0:
            net.dispatch(slow.peer.node_id, slow.peer.publish(slow.produce()))
        net.step(DT)
        leads.append(fast.own_seq - fast.store.version_vector().get(slow.peer.node_id))
    return net, fast, slow, leads


def test_fast_node_stays_within_max_staleness(make_node: MakeNode, clock: ManualClock) -> None:
    _, fast, slow, leads = _run(make_node, clock, 3, seconds=4.0)
    assert max(leads) <= 3, max(leads)
    assert slow.own_seq == 20
    # It still trains: as fast as the bound lets it (within the slow node's
    # latest update plus what is in flight).
    assert 20 <= fast.own_seq <= 23


def test_without_the_bound_the_fast_node_runs_ahead(make_node: MakeNode,
                                                    clock: ManualClock) -> None:
    _, fast, slow, leads = _run(make_node, clock, 0, seconds=4.0)
    assert fast.own_seq == 200 and slow.own_seq == 20
    assert max(leads) > 150


def test_floor_ignores_peers_not_live_or_never_heard_from(make_node: MakeNode,
                                                         clock: ManualClock) -> None:
    net, fast, slow, _ = _run(make_node, clock, 3, seconds=1.0)
    assert _floor(fast) == fast.store.version_vector().get(slow.peer.node_id) > 0  # relay: no
    net.dispatch(slow.peer.node_id, slow.peer.leave())
    assert net.run_until(lambda: _floor(fast) is None, max_time=3.0)
    assert not must_wait(fast.own_seq, _floor(fast), 3)
