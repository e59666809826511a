"""A real member with a swarm secret flooded by an outsider (issue 11): many
thousand Hellos (each opens a pending session), unauthenticated Gossip and
Fetch calls. The session table stays at its bound, the node's RSS does not
grow with the flood, and the node keeps training and answering."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data
from test_sessions_live import SECRET, Raw, _swarm_hello

from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.swarm.handshake import Initiator, SessionLimits

pytestmark = pytest.mark.timeout(300)

HELLOS = 3000


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _flood(address: str, cfg: Path) -> int:
    raw = Raw(address)
    hello = _swarm_hello(cfg, bytes(range(60, 76)))
    accepted = 0
    try:
        for start in range(0, HELLOS, 100):
            replies = await asyncio.gather(*(raw.say_hello(Initiator(hello, None).hello)
                                             for _ in range(start, start + 100)))
            accepted += sum(r.accepted for r in replies)
            want = pb.FetchRequest(ranges=[pb.Range(origin=bytes(16), start=0, end=1)])
            with pytest.raises(grpc.aio.AioRpcError):
                async for _ in raw.fetch(want.SerializeToString(), timeout=5):
                    pass
            call = raw.gossip(timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await call.read()
    finally:
        await raw.channel.close()
    return accepted


def test_a_flood_of_hellos_and_unauthenticated_calls_stays_bounded(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    node = NodeProc(tmp_path / "a", cfg, write_data(tmp_path / "a.jsonl", 60, 1), [],
                    extra=["--secret-file", str(secret), "--step-interval", "0.05"])
    try:
        address = node.address()
        wait_for(lambda: node.status()["own_seq"] >= 3, 120, "the node to train")
        # Warm-up flood first: gRPC and the allocator grow once; what matters is
        # that a second, equal flood adds (almost) nothing.
        assert asyncio.run(_flood(address, cfg)) == HELLOS
        before_kb = _rss_kb(node.proc.pid)
        seq_before = node.status()["own_seq"]
        assert asyncio.run(_flood(address, cfg)) == HELLOS
        after_kb = _rss_kb(node.proc.pid)
        s = node.status()
        counters = s["metrics"]
        evicted = counters.get("counter_session_evicted_pending", 0)
        assert evicted >= 2 * HELLOS - SessionLimits().pending, counters
        print(f"RSS before {before_kb} kB, after {after_kb} kB, evicted {evicted}")
        assert after_kb - before_kb < 30_000, (before_kb, after_kb)
        rejected = s["updates_rejected"]
        assert rejected.get("rpc_Fetch_unauthenticated", 0) >= 2 * HELLOS // 100, rejected
        assert rejected.get("rpc_Gossip_unauthenticated", 0) >= 2 * HELLOS // 100, rejected
        wait_for(lambda: node.status()["own_seq"] >= seq_before + 5, 60,
                 "the node to keep training after the flood")
        assert set(node.status()["version_vector"]) == {s["node_id"]}
    finally:
        stop_all([node])
