"""The ports: what each part of a node may touch of the others, as Protocols.

``NodeRuntime`` (runtime.py) satisfies all of them; a part names the port it
needs instead of the runtime, so no module here imports ``runtime.py`` and a
test can hand a part a small fake (tests/node/). Each port lists exactly
the members its part uses; widening one is a visible change in review.

- ``CatchUpHost``: what ``CatchUp`` and the pool join read and drive;
- ``StatusSource``: what ``StatusView`` reads to build a ``NodeStatus``.

The serving side needs no port of its own: ``SnapshotService`` and
``serve_accumulators`` take the engine, the trainer and a directory.

This module only declares; it holds no state and does no I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from seedfl.core.config import SwarmConfig
    from seedfl.core.log import UpdateLog
    from seedfl.core.store import UpdateStore
    from seedfl.net.mesh import Mesh
    from seedfl.net.servicer import PeerServicer
    from seedfl.node.catchup import CatchUp
    from seedfl.node.options import NodeOptions
    from seedfl.swarm.peer import SwarmPeer
    from seedfl.training.engine import Engine
    from seedfl.training.statedir import Recovery
    from seedfl.training.trainer import TrainerThread
    from seedfl.training.trainer_state import TrainerState

__all__ = ["CatchUpHost", "StatusSource"]


class CatchUpHost(Protocol):
    """The node as the catch-up sees it: the replica to bring up to date, the
    store and log its codes go to, the links it asks, and its phase."""

    engine: Engine
    trainer: TrainerThread
    store: UpdateStore
    log: UpdateLog
    swarm: SwarmPeer
    mesh: Mesh
    options: NodeOptions
    phase: str

    @property
    def checkpoint_dir(self) -> Path: ...

    @property
    def trainable(self) -> list[torch.Tensor]: ...


class StatusSource(Protocol):
    """The node as its status sees it: identity, phase and every counter."""

    node_id: bytes
    name: str
    address: str
    cfg: SwarmConfig
    phase: str
    started: float
    engine: Engine
    trainer: TrainerThread
    published: TrainerState
    store: UpdateStore
    swarm: SwarmPeer
    mesh: Mesh
    servicer: PeerServicer
    catchup: CatchUp
    recovery: Recovery

    @property
    def trainable(self) -> list[torch.Tensor]: ...

    @property
    def model_params(self) -> int: ...
