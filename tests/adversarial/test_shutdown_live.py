"""SIGTERM ends a real node within 5 s even while a linked peer has stopped
reading its Gossip stream (issue 11: shutdown in bounded time)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data
from test_sessions_live import Raw, _swarm_hello

from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.control import fetch_status_async
from seedfl.net.servicer import SESSION_METADATA
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Initiator

pytestmark = pytest.mark.timeout(300)


async def _stalled_peer(address: str, cfg: Path, stalled: asyncio.Event,
                        release: asyncio.Event) -> None:
    """Open a session and a Gossip stream, say our vector, then never read."""
    raw = Raw(address)
    try:
        hello = Initiator(_swarm_hello(cfg, bytes(range(40, 56))), None)
        reply = convert.hello_reply_from_proto(await raw.say_hello(hello.hello))
        session = hello.on_reply(reply)
        assert not isinstance(session, m.Prove)
        call = raw.gossip(metadata=((SESSION_METADATA, session.token.hex()),), timeout=60)
        await call.initial_metadata()
        await call.write(convert.frame_to_proto(m.Vector(VersionVector())).SerializeToString())
        stalled.set()
        await release.wait()
        call.cancel()
    finally:
        await raw.channel.close()


def test_sigterm_exits_within_5s_with_a_peer_that_stopped_reading(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    node = NodeProc(tmp_path / "a", cfg, write_data(tmp_path / "a.jsonl", 200, 1), [])
    try:
        address = node.address()
        wait_for(lambda: node.status()["own_seq"] >= 3, 120, "the node to train")

        async def scenario() -> tuple[float, int]:
            stalled, release = asyncio.Event(), asyncio.Event()
            peer = asyncio.create_task(_stalled_peer(address, cfg, stalled, release))
            await asyncio.wait_for(stalled.wait(), 30)
            # Let it push into the unread stream for a while, then ask it to stop.
            deadline = time.monotonic() + 30
            while not any(p.node_id == bytes(range(40, 56)).hex()
                          for p in (await fetch_status_async(address, 5)).peers):
                assert time.monotonic() < deadline, "the stalled peer never linked"
                await asyncio.sleep(0.2)
            began = time.monotonic()
            node.terminate(signal.SIGTERM)
            while node.proc.poll() is None:
                assert time.monotonic() - began < 30, "the node did not exit"
                await asyncio.sleep(0.05)
            took = time.monotonic() - began
            release.set()
            await peer
            return took, node.proc.returncode

        took, code = asyncio.run(scenario())
        print(f"exit took {took:.2f}s")
        assert took < 5.0, node.log()
        assert code == 0, node.log()
    finally:
        stop_all([node])
