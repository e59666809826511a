"""What a linked peer may claim about someone else (issue 11): a Leave only for
itself, no huge incarnation jumps, no eviction of a member we hear, and members
only gossip vouches for age out instead of living (and being dialed) forever."""

from __future__ import annotations

from swarmkit import hello_of, node_id

from seedfl.swarm import messages as m
from seedfl.swarm.membership import Membership, MembershipConfig
from seedfl.swarm.messages import MemberInfo

CFG = MembershipConfig(ping_interval=1.0, suspect_after=5.0, dead_after=10.0,
                       gossip_interval=5.0, unconfirmed_after=60.0, max_incarnation_step=16)
A, B, C, FAKE = node_id(1), node_id(2), node_id(3), node_id(99)


def _a() -> Membership:
    me = hello_of(1)
    a = Membership(me.node_id, me.name, me.address, 0, CFG)
    a.on_connect(hello_of(2), now=0.0)
    a.on_connect(hello_of(3), now=0.0)
    return a


def _state(mem: Membership, peer: bytes) -> tuple[str, int]:
    got = mem.get(peer)
    assert got is not None
    return got.state, got.incarnation


def test_a_leave_naming_another_node_is_ignored() -> None:
    a = _a()
    assert a.on_leave(C, m.Leave(B, 0), now=1.0) == []
    assert _state(a, B) == ("alive", 0) and a.to_disconnect(1.0) == []
    assert a.counters["forged_leave"] == 1
    a.on_leave(B, m.Leave(B, 0), now=1.5)  # B itself: taken
    assert _state(a, B) == ("left", 0)


def test_left_rumour_about_a_member_we_hear_is_forwarded_to_it_not_adopted() -> None:
    a = _a()
    rumour = m.MemberInfo(B, "n2", "", "left", 0)
    out = a.on_membership(C, m.Membership((rumour,)), now=1.0)
    assert _state(a, B) == ("alive", 0) and a.to_disconnect(1.0) == []
    assert (B, m.Membership((rumour,))) in out


def test_third_party_cannot_jump_an_incarnation_and_the_victim_ignores_a_forged_one() -> None:
    a = _a()
    huge = 1 << 47
    a.on_membership(C, m.Membership((m.MemberInfo(B, "n2", "", "suspect", huge),)), now=1.0)
    assert _state(a, B) == ("alive", 0)
    assert a.counters["implausible_incarnation"] == 1
    # Within the step a real refutation chain still passes (B restarted twice).
    a.on_membership(C, m.Membership((m.MemberInfo(B, "n2", "", "alive", 2),)), now=1.0)
    assert _state(a, B) == ("alive", 2)
    # B's own word is never limited (it says who it is in its Hello).
    a.on_membership(B, m.Membership((m.MemberInfo(B, "n2", "", "alive", 500),)), now=1.0)
    assert _state(a, B) == ("alive", 500)
    # The victim: a claim about us far beyond our incarnation is not refuted
    # (that would push ours past the bound peers accept); a near one is.
    assert a.on_membership(C, m.Membership((m.MemberInfo(A, "n1", "", "dead", huge),)),
                           now=2.0) == []
    assert a.incarnation == 0
    a.on_membership(C, m.Membership((m.MemberInfo(A, "n1", "", "dead", 0),)), now=2.0)
    assert a.incarnation == 1


def test_a_member_only_gossip_vouches_for_ages_out() -> None:
    a = _a()
    a.on_membership(C, m.Membership((m.MemberInfo(FAKE, "ghost", "10.9.9.9:1", "alive", 0),)),
                    now=0.0)
    assert _state(a, FAKE) == ("alive", 0)
    now = 0.0
    while now < 200.0:  # C keeps vouching for it in its periodic table, as honest nodes do
        now += 1.0
        a.on_membership(C, m.Membership((m.MemberInfo(FAKE, "ghost", "10.9.9.9:1", "alive",
                                                      0),)), now=now)
        a.on_frame(B, now)
        a.on_frame(C, now)
        a.tick(now)
    assert _state(a, FAKE)[0] == "dead"
    assert a.counters["unconfirmed"] == 1
    # Nobody refutes for it, so it is forgotten from the table we gossip.
    assert FAKE not in {i.node_id for i in a.table(now + CFG.forget_after + 1).members}
    # A member we are connected to never ages out this way.
    assert _state(a, B)[0] == "alive" and _state(a, C)[0] == "alive"


def test_a_bounded_view_does_not_age_out_unlinked_members_but_a_failed_dial_does() -> None:
    # In a partial view most members are never linked: N nodes each suspecting
    # N of them a minute would flood the swarm with refutations.
    a = _a()
    a.probe_unlinked = False
    a.on_membership(B, m.Membership((MemberInfo(FAKE, "fake", "10.9.9.9:1", "alive", 0),)), 1.0)
    now = 1.0
    while now < 1.0 + 3 * CFG.unconfirmed_after:
        now += 0.5
        a.on_frame(B, now)
        a.on_frame(C, now)
        a.tick(now)
    assert _state(a, FAKE) == ("alive", 0) and a.counters["unconfirmed"] == 0
    # A dial to it fails: suspected, told to the links, then dead.
    out = a.on_dial_failed(FAKE, now)
    assert {p for p, f in out if isinstance(f, m.Membership)
            and f.members[0].node_id == FAKE and f.members[0].state == "suspect"} == {B, C}
    assert a.counters["unreachable"] == 1
    for _ in range(int(CFG.dead_after / 0.5) + 2):
        now += 0.5
        a.on_frame(B, now)
        a.on_frame(C, now)
        a.tick(now)
    assert _state(a, FAKE)[0] == "dead"
    # A failed dial to a member we heard just now, or are linked to, is no sign.
    assert a.on_dial_failed(B, now) == [] and _state(a, B)[0] == "alive"
