"""The in-memory network: partitions heal by redial and refutation; a crash is detected."""

from __future__ import annotations

import random

from swarmkit import MakeNode, Node

from seedfl.swarm.clock import ManualClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.membership import MembershipConfig
from seedfl.swarm.peer import PeerConfig
from seedfl.swarm.transport import InMemoryNetwork

CONFIG = PeerConfig(
    membership=MembershipConfig(ping_interval=0.5, suspect_after=2.0, dead_after=3.0,
                                gossip_interval=1.0),
    gossip=GossipConfig(vector_interval=1.0, want_timeout=1.0),
)


def mesh(make_node: MakeNode, clock: ManualClock, n: int, loss: float = 0.0,
         ) -> tuple[InMemoryNetwork, list[Node]]:
    net = InMemoryNetwork(clock, random.Random(7), loss=loss)
    nodes = [make_node(i, CONFIG) for i in range(n)]
    for i, node in enumerate(nodes):
        net.add(node.peer, [x.peer.node_id for x in nodes[:i]])
    return net, nodes


def states(node: Node) -> dict[bytes, str]:
    return {r.node_id: r.state for r in node.peer.stats().peers}


def test_frames_are_lost_at_the_configured_rate(make_node: MakeNode, clock: ManualClock) -> None:
    net, _ = mesh(make_node, clock, 4, loss=0.3)
    net.run_until(lambda: False, max_time=20.0)
    c = net.counters
    assert 0.25 < c["lost"] / c["sent"] < 0.35
    assert c["delivered"] + c["lost"] + c["unroutable"] <= c["sent"]


def test_partition_marks_the_other_side_dead_and_heals(make_node: MakeNode,
                                                       clock: ManualClock) -> None:
    net, nodes = mesh(make_node, clock, 6)
    assert net.run_until(lambda: len(net.connected) == 15, max_time=5.0)
    left, right = {x.peer.node_id for x in nodes[:3]}, {x.peer.node_id for x in nodes[3:]}
    net.partition([left, right])
    for k, node in enumerate(nodes):
        net.dispatch(node.peer.node_id, node.peer.publish(node.produce(k + 1)))

    def split() -> bool:
        return all(states(nodes[0])[p] == "dead" for p in right)

    assert net.run_until(split, max_time=10.0)
    assert len(net.connected) == 6  # only links inside each side remain
    assert {nodes[0].store.version_vector().total(), nodes[5].store.version_vector().total()} \
        == {1 + 2 + 3, 4 + 5 + 6}

    net.heal()

    def healed() -> bool:
        vvs = {x.store.version_vector() for x in nodes}
        alive = all(s == "alive" for x in nodes for s in states(x).values())
        return len(vvs) == 1 and alive and len(net.connected) == 15

    assert net.run_until(healed, max_time=15.0)
    assert nodes[0].store.version_vector().total() == 21
    # The far side refuted its death with a new incarnation.
    assert all(x.peer.membership.incarnation >= 1 for x in nodes)


def test_crashed_node_is_declared_dead_not_left(make_node: MakeNode, clock: ManualClock) -> None:
    net, nodes = mesh(make_node, clock, 4)
    assert net.run_until(lambda: len(net.connected) == 6, max_time=5.0)
    crashed = nodes[3].peer.node_id
    net.remove(crashed)  # no Leave: the streams just break
    assert states(nodes[0])[crashed] == "suspect"
    assert net.run_until(lambda: all(states(x)[crashed] == "dead" for x in nodes[:3]),
                         max_time=10.0)
