"""The handshake, sans I/O: Hello validation and authenticated sessions (DESIGN §7, §13).

Two round trips, the second only when a side has a swarm secret::

    initiator → Hello        its Hello, with a fresh nonce n_i
    responder ← HelloReply   accepted: its own Hello (fresh nonce n_r), a session
                             id and whether it needs a proof; refused: a reason only
    initiator → Prove        the session id and proof_i
    responder ← ProveReply   accepted: proof_r; refused: a reason only

Both proofs are HMAC-SHA256 under the secret over a direction label and the
*transcript*: both Hellos (both node ids, both nonces, fingerprints,
incarnations, addresses) and the session id. Neither side can be made to
produce a MAC that the other direction, another session or another pair of
nodes would accept, so nothing a third party saw can be replayed or reflected;
the responder emits no MAC before the initiator has proved itself.

Later calls (Gossip, Fetch, Snapshot, Accumulators) present the session's
token and are answered as the peer whose Hello opened the session, if made
from the same transport address (``where``). With a secret the token is the
session id plus a third MAC over the transcript (never sent in the handshake);
without one it is the 16 random bytes of the session id, which bind a stream
to its Hello but cannot stop anyone who knows the config saying Hello as anyone.

This module knows no sockets, grpc or clock: time is passed in as ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from dataclasses import dataclass, replace

from seedfl.swarm.messages import Hello, HelloReply, Prove, ProveReply

NONCE_BYTES = 16
SESSION_BYTES = 16
_PERSON = b"seedfl/session/v2"
_INITIATOR, _RESPONDER, _TOKEN = b"initiator", b"responder", b"token"


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def _field(value: bytes) -> bytes:
    # Length-prefixed so that no two different field tuples encode alike.
    return len(value).to_bytes(4, "little") + value


def _hello_bytes(h: Hello) -> bytes:
    parts = [h.protocol_version.to_bytes(4, "little"), h.swarm_key, h.config_fingerprint,
             h.model_fingerprint, h.node_id, h.incarnation.to_bytes(8, "little"),
             h.address.encode(), h.nonce]
    return b"".join(_field(p) for p in parts)


def transcript(initiator: Hello, responder: Hello, session: bytes) -> bytes:
    """What every proof and token covers: both Hellos, in their roles, and the session."""
    body = _field(_PERSON) + _field(_hello_bytes(initiator)) + _field(_hello_bytes(responder))
    return hashlib.sha256(body + _field(session)).digest()


def mac(secret: bytes, label: bytes, script: bytes) -> bytes:
    """HMAC-SHA256 under the swarm secret of a direction label and a transcript."""
    return hmac.new(secret, _field(label) + script, hashlib.sha256).digest()


def _short(value: bytes) -> str:
    return value[:6].hex() or "(empty)"


def check_hello(ours: Hello, theirs: Hello) -> str | None:
    """None when ``theirs`` may join our swarm, else a reason naming what differs.

    Compatibility only; knowledge of the secret is what ``Prove`` shows."""
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
            f"{_short(theirs.model_fingerprint)} (the base model weights are not the same, "
            "or under zo.scale = act0 the scales computed from them differ)"
        )
    if theirs.node_id == ours.node_id:
        return "node id is our own (connected to itself, or two nodes share a state dir)"
    return None


def _check_handshake(ours: Hello, theirs: Hello) -> str | None:
    """``check_hello`` plus what a handshake needs: a fresh nonce of the right size."""
    reason = check_hello(ours, theirs)
    if reason is None and len(theirs.nonce) != NONCE_BYTES:
        reason = f"nonce must be {NONCE_BYTES} bytes, got {len(theirs.nonce)}"
    return reason


def _check_proof(secret: bytes | None, proof: bytes, expected: bytes | None) -> str | None:
    """Why ``proof`` does not show knowledge of our secret, or None when it does."""
    if secret is None:
        return "proof sent but this node has no swarm secret (configure the same secret)"
    if not proof:
        return "proof missing: this swarm requires a secret (configure the swarm secret)"
    if expected is None or not hmac.compare_digest(proof, expected):
        return "proof invalid: the swarm secret differs"
    return None


@dataclass(frozen=True)
class Session:
    """An accepted handshake: who the other side is and the token calls present."""

    peer: Hello
    token: bytes


class HandshakeRefused(Exception):
    """The handshake failed. ``by_peer``: the other side refused (else we did);
    ``is_self``: the other side is this very node (a peer list naming us)."""

    def __init__(self, reason: str, *, by_peer: bool, is_self: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.by_peer, self.is_self = reason, by_peer, is_self


class Initiator:
    """The dialing side of one handshake: ``hello``, then ``on_reply``, then
    (when it returned a Prove) ``on_proved``. Raises HandshakeRefused."""

    def __init__(self, ours: Hello, secret: bytes | None) -> None:
        self.hello = replace(ours, nonce=new_nonce())
        self._secret = secret
        self._peer: Hello | None = None
        self._session = b""
        self._script = b""

    def on_reply(self, reply: HelloReply) -> Prove | Session:
        if not reply.accepted or reply.hello is None:
            raise HandshakeRefused(reply.reason or "refused", by_peer=True,
                                   is_self=reply.is_self)
        theirs = reply.hello
        reason = _check_handshake(self.hello, theirs)
        if reason is None and len(reply.session) != SESSION_BYTES:
            reason = f"session id must be {SESSION_BYTES} bytes"
        if reason is not None:
            raise HandshakeRefused(reason, by_peer=False,
                                   is_self=theirs.node_id == self.hello.node_id)
        self._peer, self._session = theirs, reply.session
        self._script = transcript(self.hello, theirs, reply.session)
        if self._secret is None and not reply.needs_proof:
            return Session(theirs, reply.session)
        # Prove even when only one side has a secret, so that both sides log why.
        proof = mac(self._secret, _INITIATOR, self._script) if self._secret is not None else b""
        return Prove(reply.session, proof)

    def on_proved(self, reply: ProveReply) -> Session:
        if self._peer is None:
            raise RuntimeError("on_proved before an accepted on_reply")
        if not reply.accepted:
            raise HandshakeRefused(reply.reason or "refused", by_peer=True)
        secret = self._secret
        expected = mac(secret, _RESPONDER, self._script) if secret is not None else None
        reason = _check_proof(secret, reply.proof, expected)
        if reason is not None or secret is None:
            raise HandshakeRefused(reason or "no secret", by_peer=False)
        return Session(self._peer, self._session + mac(secret, _TOKEN, self._script)[:16])


@dataclass(frozen=True)
class SessionLimits:
    """pending: handshakes waiting for their Prove (oldest evicted beyond it);
    sessions: accepted sessions kept (least recently used evicted beyond it);
    pending_ttl: seconds a Hello waits for its Prove (the Hello deadline);
    idle_ttl: seconds an accepted session without an open stream stays valid."""

    pending: int = 256
    sessions: int = 1024
    pending_ttl: float = 10.0
    idle_ttl: float = 600.0


@dataclass
class _Entry:
    peer: Hello
    where: str
    script: bytes
    token: bytes
    proved: bool
    used_at: float
    streaming: bool = False


class Responder:
    """The accepting side: issues sessions on Hello, confirms them on Prove and
    answers ``authorize`` for every later call. Every table is bounded and
    every refusal and eviction counted in ``counters``."""

    def __init__(self, secret: bytes | None, limits: SessionLimits | None = None) -> None:
        self.secret = secret
        self.limits = limits or SessionLimits()
        self._entries: dict[bytes, _Entry] = {}  # session id → entry, oldest first
        self.counters: Counter[str] = Counter()

    def hello(self, ours: Hello, theirs: Hello, where: str, now: float) -> HelloReply:
        """``ours``: our Hello for this handshake, with a fresh nonce."""
        reason = _check_handshake(ours, theirs)
        if reason is not None:
            self.counters["hello_refused"] += 1
            return HelloReply(False, reason, is_self=theirs.node_id == ours.node_id)
        self._expire(now)
        session = os.urandom(SESSION_BYTES)
        script = transcript(theirs, ours, session)
        proved = self.secret is None
        token = session + mac(self.secret, _TOKEN, script)[:16] if self.secret else session
        self._entries[session] = _Entry(theirs, where, script, token, proved, now)
        self._bound()  # a stream's session is never evicted: streams are bounded by the server
        return HelloReply(True, "", ours, session, needs_proof=self.secret is not None)

    def prove(self, request: Prove, where: str, now: float) -> ProveReply:
        self._expire(now)
        secret = self.secret
        entry = self._entries.get(request.session)
        if entry is None or entry.where != where or (entry.proved and secret is not None):
            reason: str | None = "no handshake waiting for this proof (expired, or made elsewhere)"
        elif secret is None:
            reason = "proof sent but this node has no swarm secret (configure the same secret)"
        else:
            reason = _check_proof(secret, request.proof, mac(secret, _INITIATOR, entry.script))
        if reason is not None or secret is None or entry is None:
            self.counters["prove_refused"] += 1
            self._entries.pop(request.session, None)  # one try per handshake
            return ProveReply(False, reason or "refused")
        entry.proved, entry.used_at = True, now
        self._bound()
        return ProveReply(True, "", mac(secret, _RESPONDER, entry.script))

    def authorize(self, token: bytes, where: str, now: float, stream: bool = False) -> Session:
        """The session ``token`` names, for a call arriving from ``where``; raises
        PermissionError with the reason. ``stream``: the call is the session's
        one Gossip stream (a second is refused); ``release`` ends it."""
        self._expire(now)
        entry = self._entries.get(token[:SESSION_BYTES])
        if entry is None:
            reason = "no session: say Hello first (or the session expired)"
        elif not entry.proved:
            reason = "session not proved: this swarm requires the secret"
        elif not hmac.compare_digest(entry.token, token):
            reason = "session token invalid"
        elif entry.where != where:
            reason = "session was made on another connection"
        elif stream and entry.streaming:
            reason = "session already has its stream"
        else:
            entry.used_at = now
            entry.streaming = entry.streaming or stream
            self._entries[token[:SESSION_BYTES]] = self._entries.pop(token[:SESSION_BYTES])
            return Session(entry.peer, token)
        self.counters["unauthenticated"] += 1
        raise PermissionError(reason)

    def release(self, token: bytes) -> None:
        """The session's stream ended: the session ends with it."""
        self._entries.pop(token[:SESSION_BYTES], None)

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        lim = self.limits
        for sid, e in list(self._entries.items()):
            ttl = lim.idle_ttl if e.proved else lim.pending_ttl
            if not e.streaming and now - e.used_at > ttl:
                del self._entries[sid]
                self.counters["expired"] += 1

    def _bound(self) -> None:
        lim = self.limits
        # Dict order is least recently used first (authorize moves an entry to the end).
        pending = [s for s, e in self._entries.items() if not e.proved]
        for sid in pending[: max(0, len(pending) - lim.pending)]:
            del self._entries[sid]
            self.counters["evicted_pending"] += 1
        proved = [e for e in self._entries.values() if e.proved]
        idle = [s for s, e in self._entries.items() if e.proved and not e.streaming]
        for sid in idle[: max(0, len(proved) - lim.sessions)]:
            del self._entries[sid]
            self.counters["evicted_sessions"] += 1
