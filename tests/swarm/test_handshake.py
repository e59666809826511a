"""Hello validation: every mismatch is refused with a reason naming the field."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from swarmkit import MakeNode, hello_of

from seedfl.swarm.clock import ManualClock
from seedfl.swarm.handshake import check_hello, make_proof
from seedfl.swarm.messages import Hello
from seedfl.swarm.peer import HandshakeRefused
from seedfl.swarm.transport import InMemoryNetwork

SECRET = b"correct horse battery staple"


def test_matching_hello_is_accepted() -> None:
    assert check_hello(hello_of(1), hello_of(2), None) is None


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("protocol_version", 2, "protocol version"),
        ("swarm_key", bytes(16), "swarm key"),
        ("config_fingerprint", bytes(32), "config fingerprint"),
        ("model_fingerprint", bytes(32), "model fingerprint"),
    ],
)
def test_mismatch_reason_names_the_field(field: str, value: object, named: str) -> None:
    reason = check_hello(hello_of(1), hello_of(2, **{field: value}), None)
    assert reason is not None
    assert reason.startswith(named)


def test_own_node_id_is_refused() -> None:
    reason = check_hello(hello_of(1), hello_of(1, name="twin"), None)
    assert reason is not None and "own" in reason


def _signed(i: int, secret: bytes, **changes: object) -> Hello:
    h = hello_of(i, nonce=bytes([i]) * 16, **changes)
    return replace(h, proof=make_proof(secret, h))


def test_valid_proof_is_accepted() -> None:
    assert check_hello(hello_of(1), _signed(2, SECRET), SECRET) is None


def test_missing_proof_is_refused() -> None:
    reason = check_hello(hello_of(1), hello_of(2), SECRET)
    assert reason is not None and reason.startswith("proof missing")


def test_proof_under_another_secret_is_refused() -> None:
    reason = check_hello(hello_of(1), _signed(2, b"wrong"), SECRET)
    assert reason is not None and reason.startswith("proof invalid")


def test_proof_does_not_cover_a_tampered_field() -> None:
    signed = _signed(2, SECRET)
    tampered = replace(signed, incarnation=9)
    assert check_hello(hello_of(1), tampered, SECRET) is not None
    assert check_hello(hello_of(1), replace(signed, nonce=bytes(16)),
                       SECRET) is not None


def test_proof_without_secret_here_is_refused() -> None:
    reason = check_hello(hello_of(1), _signed(2, SECRET), None)
    assert reason is not None and "no swarm secret" in reason


def test_peer_connect_raises_with_reason(make_node: MakeNode) -> None:
    a = make_node(1)
    with pytest.raises(HandshakeRefused, match="config fingerprint"):
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
