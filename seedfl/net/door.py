"""A stand-alone handshake front door for servers that are not a swarm node.

``Door`` implements the session half of ``PeerHandler`` (hello, prove,
authorize, release) with the real ``handshake.Responder`` and a fixed Hello of
its own; benchmarks and tests subclass it and add the domain calls they serve.
It is the fake beside the real thing (``Mesh``, which asks its ``SwarmPeer``).
It knows no swarm state: any compatible Hello gets a session.
"""

from __future__ import annotations

import time
from dataclasses import replace

from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Initiator, Responder, Session, new_nonce


def plain_hello(node: int, swarm: bytes = b"\x05" * 16) -> m.Hello:
    """A Hello for node ``node`` (its id is that byte 16 times) of a fixed swarm."""
    return m.Hello(m.PROTOCOL_VERSION, "0.1.0", swarm, b"cfg", b"model", bytes([node]) * 16,
                   1, f"n{node}", "")


def plain_initiator(node: int, swarm: bytes = b"\x05" * 16,
                    secret: bytes | None = None) -> Initiator:
    return Initiator(plain_hello(node, swarm), secret)


class Door:
    """Sessions for a server that says it is ``ours`` (default: node 9)."""

    def __init__(self, secret: bytes | None = None, ours: m.Hello | None = None) -> None:
        self.ours = ours or plain_hello(9)
        self.responder = Responder(secret)
        self.sessions: list[Session] = []

    async def hello(self, theirs: m.Hello, peer: str) -> m.HelloReply:
        ours = replace(self.ours, nonce=new_nonce())
        return self.responder.hello(ours, theirs, peer, time.monotonic())

    async def prove(self, request: m.Prove, peer: str) -> m.ProveReply:
        return self.responder.prove(request, peer, time.monotonic())

    async def authorize(self, token: bytes, peer: str, stream: bool) -> Session:
        session = self.responder.authorize(token, peer, time.monotonic(), stream)
        self.sessions.append(session)
        return session

    def release(self, token: bytes) -> None:
        self.responder.release(token)
