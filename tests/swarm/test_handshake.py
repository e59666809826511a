"""The handshake state machine: Hello validation, mutual proofs, sessions.

Every attack here is a message a third party could have seen or built: a
recorded proof replayed, a proof reflected in the other direction, a session
token used from another connection or before it was proved, a refusal mined
for authenticating material.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from swarmkit import MakeNode, hello_of

from seedfl.swarm.clock import ManualClock
from seedfl.swarm.handshake import (
    HandshakeRefused,
    Initiator,
    Responder,
    Session,
    SessionLimits,
    check_hello,
)
from seedfl.swarm.messages import Hello, Prove
from seedfl.swarm.peer import HandshakeRefused as ConnectRefused
from seedfl.swarm.transport import InMemoryNetwork

SECRET = b"correct horse battery staple"
HERE, THERE = "ipv4:127.0.0.1:5001", "ipv4:127.0.0.1:6002"


def _pair(secret: bytes | None = SECRET, responder_secret: bytes | None = SECRET,
          **limits: float) -> tuple[Initiator, Responder]:
    return Initiator(hello_of(1), secret), Responder(responder_secret, SessionLimits(**limits))


def _responder_hello(i: int = 2) -> Hello:
    return Initiator(hello_of(i), None).hello  # a Hello with a fresh nonce


def _handshake(init: Initiator, resp: Responder, now: float = 0.0,
               where: str = HERE) -> Session:
    step = init.on_reply(resp.hello(_responder_hello(), init.hello, where, now))
    if isinstance(step, Prove):
        step = init.on_proved(resp.prove(step, where, now))
    return step


def test_matching_hello_is_accepted() -> None:
    assert check_hello(hello_of(1), hello_of(2)) is None


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("protocol_version", 9, "protocol version"),
        ("swarm_key", bytes(16), "swarm key"),
        ("config_fingerprint", bytes(32), "config fingerprint"),
        ("model_fingerprint", bytes(32), "model fingerprint"),
    ],
)
def test_mismatch_reason_names_the_field(field: str, value: object, named: str) -> None:
    reason = check_hello(hello_of(1), hello_of(2, **{field: value}))
    assert reason is not None
    assert reason.startswith(named)


def test_own_node_id_is_refused_and_flagged_as_self() -> None:
    reason = check_hello(hello_of(1), hello_of(1, name="twin"))
    assert reason is not None and "own" in reason
    resp = Responder(None)
    reply = resp.hello(_responder_hello(1), Initiator(hello_of(1), None).hello,
                       HERE, 0.0)
    assert (reply.accepted, reply.is_self) == (False, True)


def test_mutual_handshake_gives_both_sides_the_same_session() -> None:
    init, resp = _pair()
    session = _handshake(init, resp)
    assert session.peer.node_id == hello_of(2).node_id
    assert len(session.token) == 32
    served = resp.authorize(session.token, HERE, 1.0, stream=True)
    assert served.peer == init.hello and served.token == session.token


def test_refused_hello_carries_a_reason_only() -> None:
    resp = Responder(SECRET)
    bad = replace(Initiator(hello_of(1), SECRET).hello, config_fingerprint=bytes(32))
    reply = resp.hello(_responder_hello(), bad, HERE, 0.0)
    assert reply.accepted is False and reply.reason.startswith("config fingerprint")
    assert (reply.hello, reply.session, reply.needs_proof) == (None, b"", False)
    assert len(resp) == 0


def test_no_mac_leaves_the_responder_before_the_initiator_proved() -> None:
    init, resp = _pair(secret=b"wrong")
    reply = resp.hello(_responder_hello(), init.hello, HERE, 0.0)
    assert reply.accepted and reply.needs_proof and reply.hello is not None
    assert reply.hello.nonce != init.hello.nonce  # the responder's challenge
    step = init.on_reply(reply)
    assert isinstance(step, Prove)
    refused = resp.prove(step, HERE, 0.0)
    assert (refused.accepted, refused.proof) == (False, b"")
    assert refused.reason.startswith("proof invalid")
    with pytest.raises(HandshakeRefused, match="proof invalid") as info:
        init.on_proved(refused)
    assert info.value.by_peer


def test_recorded_proof_does_not_open_a_new_session() -> None:
    init, resp = _pair()
    reply = resp.hello(_responder_hello(), init.hello, HERE, 0.0)
    recorded = init.on_reply(reply)
    assert isinstance(recorded, Prove) and resp.prove(recorded, HERE, 0.0).accepted
    # An eavesdropper replays the same Hello: the responder's fresh nonce makes
    # a new transcript, so the recorded proof (even under the new session id) fails.
    again = resp.hello(_responder_hello(), init.hello, HERE, 1.0)
    replayed = resp.prove(Prove(again.session, recorded.proof), HERE, 1.0)
    assert not replayed.accepted and replayed.reason.startswith("proof invalid")
    # And the recorded Prove itself is spent.
    assert not resp.prove(recorded, HERE, 1.0).accepted


def test_proof_reflected_from_the_victim_is_refused() -> None:
    # E wants A (node 1) to accept it as B (node 2). It says Hello to A as B,
    # then gets A to dial it, answers A as "B" with the very session id and
    # nonce of its first attempt, and hands A's own initiator proof back to A.
    a = Responder(SECRET)
    as_b = Initiator(hello_of(2), None).hello
    first = a.hello(_responder_hello(1), as_b, HERE, 0.0)
    a_dials = Initiator(hello_of(1), SECRET)
    fake = replace(first, hello=as_b)
    mirrored = a_dials.on_reply(fake)
    assert isinstance(mirrored, Prove) and mirrored.session == first.session
    reply = a.prove(mirrored, HERE, 0.0)
    assert not reply.accepted and reply.reason.startswith("proof invalid")
    assert reply.proof == b""


def test_initiator_refuses_a_responder_without_the_secret() -> None:
    init, _ = _pair()
    fake = Responder(b"guess")
    reply = fake.hello(_responder_hello(), init.hello, HERE, 0.0)
    step = init.on_reply(reply)
    assert isinstance(step, Prove)
    forged = replace(fake.prove(step, HERE, 0.0), accepted=True, proof=bytes(32))
    with pytest.raises(HandshakeRefused, match="proof invalid") as info:
        init.on_proved(forged)
    assert not info.value.by_peer


@pytest.mark.parametrize(("ours", "theirs", "reason"), [
    (None, SECRET, "proof missing"),
    (SECRET, None, "no swarm secret"),
])
def test_one_sided_secret_is_refused_by_the_responder(ours: bytes | None, theirs: bytes | None,
                                                      reason: str) -> None:
    init, resp = _pair(ours, theirs)
    with pytest.raises(HandshakeRefused, match=reason) as info:
        _handshake(init, resp)
    assert info.value.by_peer
    assert resp.counters["prove_refused"] == 1 and len(resp) == 0


def test_token_is_bound_to_its_session_connection_and_proof() -> None:
    init, resp = _pair()
    session = _handshake(init, resp)
    with pytest.raises(PermissionError, match="another connection"):
        resp.authorize(session.token, THERE, 1.0)
    forged = session.token[:16] + bytes(16)
    with pytest.raises(PermissionError, match="token invalid"):
        resp.authorize(forged, HERE, 1.0)
    with pytest.raises(PermissionError, match="no session"):
        resp.authorize(b"", HERE, 1.0)
    assert resp.authorize(session.token, HERE, 1.0).peer.node_id == hello_of(1).node_id
    assert resp.counters["unauthenticated"] == 3


def test_unproved_session_is_refused() -> None:
    init, resp = _pair()
    reply = resp.hello(_responder_hello(), init.hello, HERE, 0.0)
    with pytest.raises(PermissionError, match="not proved"):
        resp.authorize(reply.session, HERE, 0.0)


def test_one_stream_per_session_and_release_ends_it() -> None:
    init, resp = _pair(None, None)
    session = _handshake(init, resp)
    assert session.token == session.token[:16] and len(session.token) == 16
    resp.authorize(session.token, HERE, 0.0, stream=True)
    with pytest.raises(PermissionError, match="already has its stream"):
        resp.authorize(session.token, HERE, 0.0, stream=True)
    assert resp.authorize(session.token, HERE, 0.0).peer == init.hello  # Fetch on it is fine
    resp.release(session.token)
    with pytest.raises(PermissionError, match="no session"):
        resp.authorize(session.token, HERE, 0.0)


def test_sessions_expire_and_tables_are_bounded() -> None:
    resp = Responder(SECRET, SessionLimits(pending=3, sessions=2, pending_ttl=5, idle_ttl=50))
    for i in range(10):
        resp.hello(_responder_hello(), Initiator(hello_of(1), SECRET).hello, HERE,
                   float(i) / 10)
    assert len(resp) == 3 and resp.counters["evicted_pending"] == 7
    resp.hello(_responder_hello(), Initiator(hello_of(1), SECRET).hello, HERE, 100.0)
    assert len(resp) == 1 and resp.counters["expired"] == 3
    proved = [_handshake(Initiator(hello_of(1), SECRET), resp, now=200.0 + i) for i in range(4)]
    assert resp.counters["evicted_sessions"] >= 1
    with pytest.raises(PermissionError):
        resp.authorize(proved[0].token, HERE, 204.0)
    assert resp.authorize(proved[-1].token, HERE, 204.0).peer.node_id == hello_of(1).node_id
    with pytest.raises(PermissionError, match="no session"):
        resp.authorize(proved[-1].token, HERE, 300.0)


def test_peer_connect_raises_with_reason(make_node: MakeNode) -> None:
    a = make_node(1)
    with pytest.raises(ConnectRefused, match="config fingerprint"):
        a.peer.connect(hello_of(2).node_id, hello_of(2, config_fingerprint=bytes(32)))
    assert a.peer.gossip.peers == {}


def test_network_refuses_nodes_with_different_secrets(make_node: MakeNode,
                                                      clock: ManualClock) -> None:
    net = InMemoryNetwork(clock, random.Random(0))
    a, b = make_node(1, secret=SECRET), make_node(2, secret=b"other")
    c = make_node(3, secret=SECRET)
    for n in (a, b, c):
        net.add(n.peer)
    assert net.connect(a.peer.node_id, b.peer.node_id) is False
    assert net.connect(a.peer.node_id, c.peer.node_id) is True
    assert net.counters["handshakes_refused"] == 1
    assert a.peer.stats().counters.get("handshake_refused", 0) == 0
    assert b.peer.stats().counters["handshake_refused"] == 1
    assert set(a.peer.gossip.peers) == {c.peer.node_id}
