"""Hello validation and the optional HMAC proof (DESIGN §7, §13).

``check_hello`` decides whether two nodes may gossip: same protocol version,
swarm key, swarm config and base model, and, when the swarm has a secret, a
valid proof that the peer knows it. A refusal is a sentence that names the
field that differs, so an operator reading a log knows what to fix.

The proof is HMAC-SHA256 keyed by the swarm secret over the identifying
fields and the sender's nonce. It proves knowledge of the secret; it does not
stop a recorded Hello being replayed by someone who cannot read the stream
afterwards (TLS is the answer to an active attacker). This module does not
know where the secret comes from, nor about connections or time.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from seedfl.swarm.messages import Hello

NONCE_BYTES = 16
_PERSON = b"seedfl/hello/v1"


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def _field(value: bytes) -> bytes:
    # Length-prefixed so that no two different field tuples encode alike.
    return len(value).to_bytes(4, "little") + value


def proof_message(hello: Hello) -> bytes:
    """The bytes the proof authenticates: every field that identifies the sender."""
    parts = [
        _PERSON,
        hello.protocol_version.to_bytes(4, "little"),
        hello.swarm_key,
        hello.config_fingerprint,
        hello.model_fingerprint,
        hello.node_id,
        hello.incarnation.to_bytes(8, "little"),
        hello.address.encode(),
        hello.nonce,
    ]
    return b"".join(_field(p) for p in parts)


def make_proof(secret: bytes, hello: Hello) -> bytes:
    """HMAC-SHA256 of ``proof_message(hello)`` under the swarm secret."""
    return hmac.new(secret, proof_message(hello), hashlib.sha256).digest()


def _short(value: bytes) -> str:
    return value[:6].hex() or "(empty)"


def check_hello(ours: Hello, theirs: Hello, secret: bytes | None) -> str | None:
    """None when ``theirs`` may join our swarm, else a reason naming what differs."""
    if theirs.protocol_version != ours.protocol_version:
        return (
            f"protocol version differs: ours {ours.protocol_version}, "
            f"theirs {theirs.protocol_version} (run the same seedfl release)"
        )
    # The swarm key is derived from the config fingerprint, so a changed config
    # changes both: name the config, which is what the operator can fix.
    if theirs.config_fingerprint != ours.config_fingerprint:
        return (
            f"config fingerprint differs: ours {_short(ours.config_fingerprint)}, theirs "
            f"{_short(theirs.config_fingerprint)} (use an identical swarm config)"
        )
    if theirs.swarm_key != ours.swarm_key:
        return (
            f"swarm key differs: ours {_short(ours.swarm_key)}, theirs "
            f"{_short(theirs.swarm_key)} (a different swarm)"
        )
    if theirs.model_fingerprint != ours.model_fingerprint:
        return (
            f"model fingerprint differs: ours {_short(ours.model_fingerprint)}, theirs "
            f"{_short(theirs.model_fingerprint)} (the base model weights are not the same)"
        )
    if theirs.node_id == ours.node_id:
        return "node id is our own (connected to itself, or two nodes share a state dir)"
    if secret is None:
        if theirs.proof:
            return "proof sent but this node has no swarm secret (configure the same secret)"
        return None
    if not theirs.proof:
        return "proof missing: this swarm requires a secret (configure the swarm secret)"
    if not hmac.compare_digest(theirs.proof, make_proof(secret, theirs)):
        return "proof invalid: the swarm secret differs"
    return None
