"""Builders for the grpc tests: the swarm they use and its handshake door.

Imported by the tests as ``netkit`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from seedfl.net.door import Door, plain_hello, plain_initiator

SWARM = b"\x05" * 16
hello = plain_hello
dial = plain_initiator

__all__ = ["SWARM", "Door", "dial", "hello"]
