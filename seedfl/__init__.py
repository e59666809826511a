"""seedfl: decentralized zeroth-order finetuning that sends one byte per update.

The public Python API is what ``__all__`` names (a test pins it):

- ``Node``: run a node from Python (``async with seedfl.Node(...) as node``);
- ``NodeOptions``: the node's own settings (the CLI's `seedfl run` flags);
- ``NodeStatus``, ``PeerStatus``: what ``node.status()`` and `seedfl status` report;
- ``SwarmConfig``, ``load_config``, ``parse_config``: the swarm's shared config.

Names load on first use, so ``import seedfl`` stays cheap (no torch, no grpc).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
PROTOCOL_VERSION = 2

_LAZY = {
    "Node": "seedfl.node.api",
    "NodeOptions": "seedfl.node.options",
    "NodeStatus": "seedfl.core.status",
    "PeerStatus": "seedfl.core.status",
    "SwarmConfig": "seedfl.core.config",
    "load_config": "seedfl.core.config",
    "parse_config": "seedfl.core.config",
}

__all__ = ["PROTOCOL_VERSION", "Node", "NodeOptions", "NodeStatus", "PeerStatus",
           "SwarmConfig", "__version__", "load_config", "parse_config"]

if TYPE_CHECKING:
    from seedfl.core.config import SwarmConfig, load_config, parse_config
    from seedfl.core.status import NodeStatus, PeerStatus
    from seedfl.node.api import Node
    from seedfl.node.options import NodeOptions


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seedfl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
