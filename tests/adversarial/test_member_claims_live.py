"""A linked peer lying about others, against two real ``seedfl run`` members on
loopback (issue 11). Without a swarm secret anyone who knows the config can
link, so this is the threat a plaintext swarm faces from any peer: a Leave in
a member's name, a huge incarnation or a "left" rumour about it, batches for
the victim's own origin and a flood of made-up origins. The victim keeps its
own history, its peer stays alive in its view, and both keep training."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data
from test_sessions_live import Raw, _swarm_hello

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.control import fetch_status_async
from seedfl.net.servicer import SESSION_METADATA
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Initiator

pytestmark = pytest.mark.timeout(300)

LIAR = bytes(range(80, 96))
MADE_UP = 50  # made-up origins pushed; the swarm config caps origins at 8


async def _lie(address: str, cfg: Path, a_id: bytes, b_id: bytes, a_seq: int) -> None:
    raw = Raw(address)
    try:
        init = Initiator(_swarm_hello(cfg, LIAR), None)
        session = init.on_reply(convert.hello_reply_from_proto(await raw.say_hello(init.hello)))
        assert not isinstance(session, m.Prove)
        call = raw.gossip(metadata=((SESSION_METADATA, session.token.hex()),), timeout=30)
        await call.initial_metadata()
        frames: list[m.Frame] = [
            m.Vector(VersionVector()),
            m.Leave(b_id, 1),  # B "leaves", said by us
            m.Membership((m.MemberInfo(b_id, "b", "", "suspect", 1 << 47),)),
            m.Membership((m.MemberInfo(b_id, "b", "", "left", 1),)),
            m.Membership((m.MemberInfo(a_id, "a", "", "dead", 1 << 47),)),  # to A about A
            m.Batch(UpdateBatch(a_id, a_seq + 5000, b"\x05" * 4)),  # seqs A has not made yet
        ]
        frames += [m.Batch(UpdateBatch(bytes([200, i]) * 8, 0, b"\x05")) for i in range(MADE_UP)]
        for frame in frames:
            await call.write(convert.frame_to_proto(frame).SerializeToString())
        # Stay linked until the node has handled the last frame (a polled
        # condition: closing at once could drop frames still in flight).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (await fetch_status_async(address, 5)).updates_rejected.get(
                "origin_cap", 0) < MADE_UP - 8:
            assert loop.time() < deadline, "the node never handled the made-up origins"
            await asyncio.sleep(0.1)
        await call.done_writing()
    finally:
        await raw.channel.close()


def test_a_linked_liar_cannot_evict_isolate_or_rewrite_a_member(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG + "\n[swarm]\nmax_origins = 8\n")
    extra = ["--step-interval", "0.05"]
    nodes: list[NodeProc] = []
    try:
        a = NodeProc(tmp_path / "a", cfg, write_data(tmp_path / "a.jsonl", 60, 1), [], extra=extra)
        nodes.append(a)
        b = NodeProc(tmp_path / "b", cfg, write_data(tmp_path / "b.jsonl", 60, 2), [a.address()],
                     extra=extra)
        nodes.append(b)

        def linked() -> list[dict] | None:
            ss = [n.status() for n in nodes]
            ok = all(s["own_seq"] >= 3 and any(p["state"] == "alive" for p in s["peers"])
                     for s in ss)
            return ss if ok else None

        sa, sb = wait_for(linked, 120, "two members training together")
        a_id, b_id = bytes.fromhex(sa["node_id"]), bytes.fromhex(sb["node_id"])
        asyncio.run(_lie(a.address(), cfg, a_id, b_id, sa["own_seq"]))

        def kept_on() -> dict | None:
            s = a.status()
            return s if s["own_seq"] >= sa["own_seq"] + 10 else None

        after = wait_for(kept_on, 120, "A to keep training after the lies")
        peers = {p["node_id"]: p["state"] for p in after["peers"]}
        assert peers[b_id.hex()] == "alive", peers
        assert after["version_vector"][a_id.hex()] == after["own_seq"]
        assert len(after["version_vector"]) <= 8, after["version_vector"]
        counters, rejected = after["metrics"], after["updates_rejected"]
        assert counters.get("counter_membership_forged_leave", 0) >= 1, counters
        assert counters.get("counter_membership_implausible_incarnation", 0) >= 2, counters
        assert rejected.get("own_origin", 0) >= 4, rejected
        assert rejected.get("origin_cap", 0) >= MADE_UP - 8, rejected

        # B still sees A alive and keeps receiving its updates.
        def b_follows() -> dict | None:
            s = b.status()
            return s if s["version_vector"].get(a_id.hex(), 0) >= sa["own_seq"] + 10 else None

        sb2 = wait_for(b_follows, 120, "B to keep receiving A's updates")
        assert {p["node_id"]: p["state"] for p in sb2["peers"]}[a_id.hex()] == "alive"
    finally:
        stop_all(nodes)
