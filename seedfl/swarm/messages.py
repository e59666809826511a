"""Frames the swarm protocol exchanges between two peers (DESIGN §6, §7).

Every frame is a frozen dataclass of plain values: this module is the domain
side of the wire. ``seedfl/net/convert.py`` maps each class one to one onto a
protobuf message; nothing here knows about protobuf, grpc, sockets or time.

Ranges are ``(origin, start, end)`` with ``end`` exclusive, in the same seq
numbering as ``UpdateBatch`` and ``VersionVector`` (a vector count ``n`` means
seqs ``0 .. n-1`` are held).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector

# 2: sessions (Hello + Prove; calls present a session token), no proof in Hello.
PROTOCOL_VERSION = 2

MemberState: TypeAlias = Literal["alive", "suspect", "dead", "left"]
MEMBER_STATES: tuple[MemberState, ...] = ("alive", "suspect", "dead", "left")

Range: TypeAlias = tuple[bytes, int, int]


@dataclass(frozen=True)
class Hello:
    """What a node says about itself when a connection opens (DESIGN §7)."""

    protocol_version: int
    software_version: str
    swarm_key: bytes
    config_fingerprint: bytes
    model_fingerprint: bytes
    node_id: bytes
    incarnation: int
    name: str
    address: str  # host:port this node listens on, so others can dial it
    nonce: bytes = b""  # fresh per handshake; the session's proofs cover it


@dataclass(frozen=True)
class HelloReply:
    """The responder's verdict on a Hello.

    Accepted: its own Hello, the session id the initiator proves (with a
    secret) or presents (without), and whether a Prove must follow. Refused:
    the reason only, and whether the caller is the responder itself."""

    accepted: bool
    reason: str
    hello: Hello | None = None
    session: bytes = b""
    needs_proof: bool = False
    is_self: bool = False


@dataclass(frozen=True)
class Prove:
    """The initiator's proof that it knows the swarm secret, for one session."""

    session: bytes
    proof: bytes


@dataclass(frozen=True)
class ProveReply:
    """Accepted: the responder's own proof; refused: the reason only."""

    accepted: bool
    reason: str
    proof: bytes = b""


@dataclass(frozen=True)
class Batch:
    """Contiguous updates of one origin: codes[i] belongs to first_seq + i."""

    batch: UpdateBatch


@dataclass(frozen=True)
class Vector:
    """A node's replication summary, sent periodically and on connect.

    ``projection`` is a fixed random projection of the node's parameters, used
    for the replica divergence estimate between peers with equal vectors; the
    swarm layer carries it but never computes it. A ``partial`` Vector names
    only some origins (those that changed since the last one on this link,
    swarm/vector_delta.py): the receiver merges it into what it holds of the
    sender's vector. ``vv_digest`` is ``VersionVector.digest`` of the sender's
    whole vector (empty: not given).
    """

    vv: VersionVector
    applied_vv_digest: bytes = b""
    projection: float | None = None
    applied_total: int = 0
    partial: bool = False
    vv_digest: bytes = b""


@dataclass(frozen=True)
class Want:
    """Ask a peer for these ranges; it answers with Batch frames."""

    ranges: tuple[Range, ...]


# The unary Fetch RPC asks for ranges exactly as a Want frame does.
FetchRequest: TypeAlias = Want


@dataclass(frozen=True)
class MemberInfo:
    """One line of a membership table as gossiped between peers."""

    node_id: bytes
    name: str
    address: str
    state: MemberState
    incarnation: int


@dataclass(frozen=True)
class Membership:
    members: tuple[MemberInfo, ...]


@dataclass(frozen=True)
class Ping:
    nonce: int
    sent_at: float


@dataclass(frozen=True)
class Ack:
    nonce: int
    sent_at: float  # echoed from the Ping, so the pinger measures rtt on its own clock


@dataclass(frozen=True)
class Leave:
    """A node announces it is leaving for good at this incarnation."""

    node_id: bytes
    incarnation: int


@dataclass(frozen=True)
class Drop:
    """The sender closes this link to keep its active view bounded (swarm/views.py);
    it is alive and stays in the swarm."""


Frame: TypeAlias = Batch | Vector | Want | Membership | Ping | Ack | Leave | Drop

# What the state machines ask the transport to send: (peer node id, frame).
Outgoing: TypeAlias = tuple[bytes, Frame]
