"""A stopped node's model: its state directory read back, nothing started.

``load_node_model(state_dir)`` opens the directory (refusing one that is not a
node's), loads the model the swarm trains, and recovers θ from the newest
checkpoint plus the log, exactly as a starting node does. `seedfl eval`,
`seedfl export` and the demo read a node's result this way. It does not
listen, dial or train, and it does not take the directory's node lock: run it
on a directory whose node has stopped (or accept a slightly stale θ).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seedfl.core.config import SwarmConfig
from seedfl.core.errors import UsageError
from seedfl.training.engine import Engine
from seedfl.training.model import ModelBundle, load_swarm_model
from seedfl.training.statedir import Recovery, StateDir, recover
from seedfl.training.task import Task

__all__ = ["NodeModel", "load_node_model", "open_state_dir"]


@dataclass
class NodeModel:
    config: SwarmConfig
    bundle: ModelBundle
    task: Task
    engine: Engine
    recovery: Recovery


def open_state_dir(state_dir: str | Path) -> StateDir:
    state = StateDir(Path(state_dir))
    if not state.exists():
        raise UsageError(f"{state_dir} is not a seedfl state directory; run `seedfl run` first")
    return state


def load_node_model(state_dir: str | Path) -> NodeModel:
    """The model of a state directory at its newest checkpoint plus its log."""
    state = open_state_dir(state_dir)
    cfg = state.config()
    node_id, _ = state.open(cfg)
    bundle = load_swarm_model(cfg)
    task = Task.from_config(cfg.task, bundle.tokenizer)
    engine = Engine(cfg, bundle, task, [], node_id)
    log = state.open_log()
    try:
        report, _ = recover(engine, state, log)
    finally:
        log.close()
    return NodeModel(cfg, bundle, task, engine, report)
