"""``seedfl.Node``: a node run from Python, on the caller's event loop.

    async with seedfl.Node(config="swarm.toml", data="train.jsonl", state_dir="n1",
                           listen="127.0.0.1:0", mdns=False) as node:
        await node.wait_for(steps=20)
        print(node.status().applied_total)
        model = await node.model()        # a plain transformers model at θ

The keywords are ``NodeOptions``' fields (``config`` may be a path or a
``SwarmConfig``). The node is the same one `seedfl run` starts: the trainer
thread, gRPC server, mesh and, unless ``mdns=False``, mDNS. It does not install
signal handlers (the event loop is yours) and prints no progress lines.

This module does not know how any part works; it starts, watches and stops a
``NodeRuntime`` and hands out typed values.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from seedfl.core.status import NodeStatus
from seedfl.node.options import NodeOptions
from seedfl.node.runtime import NodeRuntime

__all__ = ["Node"]

# How often wait_for looks at the node's counters: a status costs microseconds,
# and a step of a real model tens of milliseconds.
_POLL_S = 0.02


class Node:
    def __init__(self, options: NodeOptions | None = None, /, **kwargs: Any) -> None:
        if options is None:
            options = NodeOptions(**{"quiet": True, **kwargs})
        elif kwargs:
            options = replace(options, **kwargs)
        self.options = options
        self._runtime: NodeRuntime | None = None

    # -- lifetime ------------------------------------------------------------------
    async def start(self) -> Node:
        """Open the state dir, load the model, recover, listen and join."""
        if self._runtime is not None:
            raise RuntimeError("this Node is already started")
        runtime = NodeRuntime(self.options)
        await runtime.start()
        self._runtime = runtime
        return self

    async def stop(self) -> None:
        """Leave the swarm and stop (bounded time); the state dir keeps everything."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.shutdown()

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- what it is ------------------------------------------------------------------
    @property
    def node_id(self) -> bytes:
        return self._started().node_id

    @property
    def address(self) -> str:
        """host:port peers and `seedfl status` reach this node at."""
        return self._started().address

    def status(self) -> NodeStatus:
        """One consistent snapshot, the same `seedfl status --json` shows."""
        return self._started().view.status()

    async def wait_for(self, *, steps: int | None = None, applied: int | None = None,
                       timeout: float | None = None) -> NodeStatus:
        """Wait until this node made ``steps`` own updates (counted across restarts,
        like ``max_steps``) and its trainer applied ``applied`` updates of all
        origins. Returns the status that met them.

        Raises TimeoutError after ``timeout`` seconds, and the trainer's error
        (e.g. ``DivergedError``) if it stopped.
        """
        runtime = self._started()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if runtime.trainer.error is not None:
                raise runtime.trainer.error
            st = runtime.view.status()
            if (steps is None or st.own_seq >= steps) and \
                    (applied is None or st.applied_total >= applied):
                return st
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"wait_for(steps={steps}, applied={applied}): after "
                                   f"{timeout} s own_seq={st.own_seq}, "
                                   f"applied_total={st.applied_total}")
            await asyncio.sleep(_POLL_S)

    # -- the model -----------------------------------------------------------------
    async def model(self) -> Any:
        """A copy of the model at the current θ, as plain transformers loads an export
        (LoRA merged, label rows folded). Taken between two steps; costs one model."""
        from seedfl.training.export import plain_model

        runtime = self._started()
        return await asyncio.wrap_future(runtime.trainer.call(lambda: plain_model(runtime.bundle)))

    async def export(self, out_dir: str | Path) -> Path:
        """Write the current model as a transformers directory (what `seedfl export` writes)."""
        from seedfl.training.export import export_model

        runtime = self._started()
        out = Path(out_dir)
        return await asyncio.wrap_future(runtime.trainer.call(
            lambda: export_model(runtime.bundle, out)))

    def _started(self) -> NodeRuntime:
        if self._runtime is None:
            raise RuntimeError("start the Node first (`async with seedfl.Node(...)` or "
                               "`await node.start()`)")
        return self._runtime
