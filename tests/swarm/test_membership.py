"""SWIM-like membership: suspicion on silence, death, refutation, sticky leave."""

from __future__ import annotations

import pytest
from swarmkit import hello_of, node_id

from seedfl.swarm import messages as m
from seedfl.swarm.membership import Membership, MembershipConfig

CFG = MembershipConfig(ping_interval=1.0, suspect_after=5.0, dead_after=10.0,
                       gossip_interval=5.0)
A, B, C = node_id(1), node_id(2), node_id(3)


def table(i: int = 1) -> Membership:
    me = hello_of(i)
    return Membership(me.node_id, me.name, me.address, 0, CFG)


def state(mem: Membership, peer: bytes) -> str:
    got = mem.get(peer)
    assert got is not None
    return got.state


def frames(out: list[m.Outgoing], kind: type) -> list[tuple[bytes, object]]:
    return [(p, f) for p, f in out if isinstance(f, kind)]


def test_connect_sends_table_and_pings_on_interval() -> None:
    a = table()
    out = a.on_connect(hello_of(2), now=0.0)
    assert frames(out, m.Membership) == [(B, a.table(0.0))]
    assert len(frames(a.tick(0.0), m.Ping)) == 1
    assert frames(a.tick(0.5), m.Ping) == []
    assert len(frames(a.tick(1.0), m.Ping)) == 1


def test_silent_peer_becomes_suspect_then_dead() -> None:
    a = table()
    a.on_connect(hello_of(2), now=0.0)
    a.tick(4.9)
    assert state(a, B) == "alive"
    a.tick(5.1)
    assert state(a, B) == "suspect"
    assert a.to_disconnect(5.1) == []
    a.tick(15.0)
    assert state(a, B) == "suspect"  # dead_after counts from the suspicion
    out = a.tick(15.2)
    assert state(a, B) == "dead"
    assert a.counters["suspected"] == 1 and a.counters["declared_dead"] == 1
    assert a.to_disconnect(15.2) == [B]
    # The news is gossiped to the other peers.
    assert not frames(out, m.Membership) or all(p == B for p, _ in frames(out, m.Membership))


def test_any_frame_is_a_sign_of_life() -> None:
    a = table()
    a.on_connect(hello_of(2), now=0.0)
    a.on_frame(B, now=4.0)
    a.tick(8.0)
    assert state(a, B) == "alive"
    a.tick(9.1)
    assert state(a, B) == "suspect"


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    a, b = table(1), table(2)
    a.on_connect(hello_of(2), now=0.0)
    b.on_connect(hello_of(1), now=0.0)
    b.on_connect(hello_of(3), now=0.0)
    b.tick(6.0)  # b hears nothing from a or c: suspects both
    assert state(b, A) == "suspect"
    # b's rumour reaches a, which refutes it.
    out = a.on_membership(B, m.Membership((m.MemberInfo(A, "n1", "", "suspect", 0),)), 6.0)
    assert a.incarnation == 1 and a.counters["refuted"] == 1
    refutation = frames(out, m.Membership)
    assert refutation and refutation[0][0] == B
    # The refutation (alive at incarnation 1) overrides the suspicion at b.
    b.on_membership(A, refutation[0][1], 6.1)  # type: ignore[arg-type]
    got = b.get(A)
    assert got is not None and (got.state, got.incarnation) == ("alive", 1)


def test_rumour_about_a_peer_we_hear_is_forwarded_not_adopted() -> None:
    a = table(1)
    a.on_connect(hello_of(2), now=0.0)
    a.on_connect(hello_of(3), now=0.0)
    rumour = m.MemberInfo(B, "n2", "", "dead", 0)
    out = a.on_membership(C, m.Membership((rumour,)), now=1.0)
    assert state(a, B) == "alive"
    assert (B, m.Membership((rumour,))) in out


def test_leave_is_sticky_for_its_incarnation() -> None:
    a = table()
    a.on_connect(hello_of(2), now=0.0)
    a.on_connect(hello_of(3), now=0.0)
    out = a.on_leave(B, m.Leave(B, 0), now=1.0)
    assert state(a, B) == "left"
    assert (C, m.Membership((m.MemberInfo(B, "n2", "127.0.0.1:7002", "left", 0),))) in out
    assert a.on_disconnect(B, now=1.1) == []
    for claim in ("alive", "suspect", "dead"):
        a.on_membership(C, m.Membership((m.MemberInfo(B, "n2", "", claim, 0),)), now=2.0)
        assert state(a, B) == "left"
    a.tick(100.0)
    assert state(a, B) == "left"
    # Rejoining needs a new incarnation.
    a.on_membership(C, m.Membership((m.MemberInfo(B, "n2", "x:1", "alive", 1),)), now=3.0)
    assert state(a, B) == "alive"


def test_own_leave_announces_to_connected_peers() -> None:
    a = table()
    a.on_connect(hello_of(2), now=0.0)
    out = a.leave(now=1.0)
    assert out == [(B, m.Leave(A, 0))]
    assert a.me.state == "left"
    # A node that left does not refute rumours any more.
    a.on_membership(B, m.Membership((m.MemberInfo(A, "n1", "", "dead", 0),)), now=2.0)
    assert a.incarnation == 0


def test_rtt_is_an_ema_of_ping_ack_samples() -> None:
    a = table()
    a.on_connect(hello_of(2), now=0.0)
    a.on_ack(B, m.Ack(1, sent_at=0.0), now=0.1)
    a.on_ack(B, m.Ack(2, sent_at=1.0), now=1.2)
    got = a.get(B)
    assert got is not None and got.rtt == pytest.approx(0.8 * 0.1 + 0.2 * 0.2)
    assert a.on_ping(B, m.Ping(5, 3.0), now=3.5) == [(B, m.Ack(5, 3.0))]


def test_malformed_members_are_counted_and_ignored() -> None:
    a = table()
    bad = (m.MemberInfo(b"short", "x", "", "alive", 0),
           m.MemberInfo(C, "x", "", "zombie", 0))  # type: ignore[arg-type]
    a.on_membership(B, m.Membership(bad), now=0.0)
    assert a.counters["malformed_member"] == 2 and a.members() == []


def test_table_is_bounded_by_evicting_old_tombstones() -> None:
    me = hello_of(1)
    a = Membership(me.node_id, me.name, me.address, 0,
                   MembershipConfig(max_members=2))
    a.on_membership(B, m.Membership((m.MemberInfo(node_id(5), "", "", "dead", 0),
                                     m.MemberInfo(node_id(6), "", "", "alive", 0))), 0.0)
    a.on_membership(B, m.Membership((m.MemberInfo(node_id(7), "", "", "alive", 0),)), 1.0)
    assert {x.node_id for x in a.members()} == {node_id(6), node_id(7)}
    a.on_membership(B, m.Membership((m.MemberInfo(node_id(8), "", "", "alive", 0),)), 2.0)
    assert a.counters["membership_full"] == 1 and len(a.members()) == 2


def test_the_oldest_tombstone_goes_first_and_a_revived_member_is_no_tombstone() -> None:
    me = hello_of(1)
    a = Membership(me.node_id, me.name, me.address, 0, MembershipConfig(max_members=3))

    def hear(now: float, *rows: tuple[int, str, int]) -> None:
        a.on_membership(B, m.Membership(tuple(m.MemberInfo(node_id(i), "", "", s, inc)
                                              for i, s, inc in rows)), now)

    def ids() -> set[bytes]:
        return {x.node_id for x in a.members()}

    hear(0.0, (5, "alive", 0), (6, "dead", 0))
    hear(1.0, (5, "dead", 0), (9, "alive", 0))  # 6 died first, then 5
    hear(3.0, (7, "alive", 0))
    assert ids() == {node_id(5), node_id(9), node_id(7)}  # the older tombstone, 6, went
    hear(4.0, (5, "alive", 1))  # 5 refuted: alive again, no tombstone
    hear(5.0, (8, "alive", 0))
    assert a.counters["membership_full"] == 1
    assert ids() == {node_id(5), node_id(9), node_id(7)}
