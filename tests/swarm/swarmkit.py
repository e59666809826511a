"""Builders shared by the swarm tests: node ids, Hellos and peers on a manual clock.

Imported by the tests as ``swarmkit`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.swarm.clock import ManualClock
from seedfl.swarm.messages import PROTOCOL_VERSION, Hello
from seedfl.swarm.peer import PeerConfig, SwarmPeer

SWARM_KEY = bytes(range(16))
CONFIG_FP = bytes(range(32))
MODEL_FP = bytes(range(100, 132))


def node_id(i: int) -> bytes:
    return i.to_bytes(2, "big") * 8


def hello_of(i: int, **changes: object) -> Hello:
    fields: dict[str, object] = dict(
        protocol_version=PROTOCOL_VERSION, software_version="0.1.0", swarm_key=SWARM_KEY,
        config_fingerprint=CONFIG_FP, model_fingerprint=MODEL_FP, node_id=node_id(i),
        incarnation=0, name=f"n{i}", address=f"127.0.0.1:{7000 + i}",
    )
    fields.update(changes)
    return Hello(**fields)  # type: ignore[arg-type]


@dataclass
class Node:
    """A SwarmPeer plus what its trainer was handed."""

    peer: SwarmPeer
    store: UpdateStore
    delivered: list[UpdateBatch] = field(default_factory=list)
    own_seq: int = 0

    def produce(self, n: int = 1, code: int = 7) -> UpdateBatch:
        batch = UpdateBatch(self.peer.node_id, self.own_seq, bytes([code]) * n)
        self.own_seq += n
        return batch


MakeNode = Callable[..., Node]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_node(clock: ManualClock) -> MakeNode:
    def make(i: int, config: PeerConfig | None = None, secret: bytes | None = None,
             **kw: object) -> Node:
        store = UpdateStore()
        delivered: list[UpdateBatch] = []
        peer = SwarmPeer(hello_of(i), store, delivered.append, clock, config, secret,
                         **kw)  # type: ignore[arg-type]
        return Node(peer, store, delivered)

    return make
