"""Two real ``seedfl run`` members with a swarm secret, attacked over loopback by
a raw grpc.aio client (issue 11).

The attacker knows everything mDNS and ``seedfl status`` show (node ids,
config and model fingerprints) and, for the replay cases, every message of a
genuine member's handshake (the test plays that member with the secret, the
way an eavesdropper would have recorded it). It never gets a session: every
peer RPC ends UNAUTHENTICATED, nothing it sends reaches a version vector, and
both members keep training.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data

from seedfl.core.updates import UpdateBatch
from seedfl.net import convert
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.servicer import SESSION_METADATA
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Initiator

pytestmark = pytest.mark.timeout(300)

SECRET = b"the swarm's shared secret"
FRESH = bytes(range(200, 216))  # an origin no member has


def _swarm_hello(cfg: Path, node_id: bytes) -> m.Hello:
    from seedfl.core.config import load_config
    from seedfl.training.model import load_swarm_model

    conf = load_config(str(cfg))
    return m.Hello(m.PROTOCOL_VERSION, "attacker", conf.swarm_key(), conf.fingerprint(),
                   load_swarm_model(conf).fingerprint, node_id, 1, "mallory", "127.0.0.1:9")


class Raw:
    """One attacker channel to one member, speaking raw bytes."""

    def __init__(self, address: str) -> None:
        # A connection of its own: grpc shares one TCP connection between the
        # channels of a process to one target, and a session is bound to it.
        self.channel = grpc.aio.insecure_channel(address,
                                                 options=[("grpc.use_local_subchannel_pool", 1)])
        self.hello = self.channel.unary_unary("/seedfl.v1.Peer/Hello")
        self.prove = self.channel.unary_unary("/seedfl.v1.Peer/Prove")
        self.gossip = self.channel.stream_stream("/seedfl.v1.Peer/Gossip")
        self.fetch = self.channel.unary_stream("/seedfl.v1.Peer/Fetch")
        self.snapshot = self.channel.unary_stream("/seedfl.v1.Peer/Snapshot")
        self.accumulators = self.channel.unary_unary("/seedfl.v1.Peer/Accumulators")

    async def say_hello(self, hello: m.Hello) -> pb.HelloReply:
        raw = await self.hello(convert.hello_to_proto(hello).SerializeToString(), timeout=5)
        return pb.HelloReply.FromString(raw)

    async def say_prove(self, session: bytes, proof: bytes) -> pb.ProveReply:
        req = pb.ProveRequest(session=session, proof=proof).SerializeToString()
        return pb.ProveReply.FromString(await self.prove(req, timeout=5))

    async def push(self, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
        """Open Gossip with ``metadata`` and push a batch for a fresh origin."""
        call = self.gossip(metadata=metadata, timeout=5)
        frame = convert.frame_to_proto(m.Batch(UpdateBatch(FRESH, 0, b"\x05" * 8)))
        try:
            # Wait for the server's first word before writing: a refused stream ends
            # at once, and a write racing that end can surface as INTERNAL (an
            # HTTP/2 reset) instead of the server's status. A server that wrongly
            # accepts still gets the batch (and the version-vector check catches it).
            await call.initial_metadata()
            await call.write(frame.SerializeToString())
            await call.done_writing()
            async for _ in call:
                pass
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass
        return await call.code()

    async def unary_codes(self, metadata: tuple[tuple[str, str], ...]) -> list[grpc.StatusCode]:
        codes = []
        want = pb.FetchRequest(ranges=[pb.Range(origin=FRESH, start=0, end=1)])
        for rpc, body in ((self.fetch, want), (self.snapshot, pb.SnapshotRequest())):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in rpc(body.SerializeToString(), metadata=metadata, timeout=5):
                    pass
            codes.append(info.value.code())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.accumulators(b"", metadata=metadata, timeout=5)
        return [*codes, info.value.code()]


async def _attack(a_addr: str, b_addr: str, a_id: bytes, b_id: bytes, cfg: Path) -> None:
    unauth = grpc.StatusCode.UNAUTHENTICATED
    as_b = _swarm_hello(cfg, b_id)
    a, b = Raw(a_addr), Raw(b_addr)
    try:
        # 1. The old attack: name a member in metadata, push for a fresh origin.
        assert await a.push((("seedfl-node-id", b_id.hex()),)) == unauth
        assert await a.push(((SESSION_METADATA, bytes(32).hex()),)) == unauth
        assert await a.unary_codes(()) == [unauth] * 3
        assert await a.unary_codes(((SESSION_METADATA, "zz"),)) == [unauth] * 3

        # 2. A refused Hello carries its reason and nothing else.
        refused = await a.say_hello(replace(Initiator(as_b, None).hello,
                                            config_fingerprint=bytes(32)))
        assert refused.reason.startswith("config fingerprint differs")
        assert (refused.accepted, refused.HasField("hello"), refused.session) == \
            (False, False, b"")

        # 3. Hello as B is answered with a challenge, but no proof; a guess fails,
        # and the unproved session opens nothing.
        reply = await a.say_hello(Initiator(as_b, None).hello)
        assert reply.accepted and reply.needs_proof and len(reply.session) == 16
        guess = await a.say_prove(reply.session, bytes(32))
        assert (guess.accepted, guess.proof) == (False, b"")
        assert guess.reason.startswith("proof invalid")
        assert await a.push(((SESSION_METADATA, reply.session.hex()),)) == unauth

        # 4. Record a genuine member's handshake with A (the test holds the secret).
        member = Initiator(_swarm_hello(cfg, bytes(range(16))), SECRET)
        recorded_hello = member.hello
        step = member.on_reply(convert.hello_reply_from_proto(await a.say_hello(recorded_hello)))
        assert isinstance(step, m.Prove)
        recorded_prove = step
        answer = await a.say_prove(step.session, step.proof)
        assert answer.accepted and len(answer.proof) == 32
        token = member.on_proved(convert.prove_reply_from_proto(answer)).token
        # The token works on the member's connection only.
        assert await Raw(a_addr).push(((SESSION_METADATA, token.hex()),)) == unauth

        # 5. Replay: the recorded Hello and Prove, to A again and to B.
        for target in (a, b):
            again = await target.say_hello(recorded_hello)
            assert again.accepted
            replayed = await target.say_prove(again.session, recorded_prove.proof)
            assert not replayed.accepted and replayed.proof == b""
            assert await target.push(((SESSION_METADATA, again.session.hex()),)) == unauth
        # 6. Reflection: A's proof handed to B as an initiator proof.
        fresh = await b.say_hello(recorded_hello)
        assert not (await b.say_prove(fresh.session, answer.proof)).accepted
    finally:
        await a.channel.close()
        await b.channel.close()


def test_outsider_without_a_session_is_refused_everywhere(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    extra = ["--secret-file", str(secret), "--step-interval", "0.05"]
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

        before = wait_for(linked, 120, "two members training together")
        a_id, b_id = (bytes.fromhex(s["node_id"]) for s in before)
        asyncio.run(_attack(a.address(), b.address(), a_id, b_id, cfg))

        def trained_on() -> list[dict] | None:
            ss = [n.status() for n in nodes]
            more = all(s["own_seq"] >= o["own_seq"] + 5 for s, o in zip(ss, before, strict=True))
            return ss if more else None

        after = wait_for(trained_on, 120, "both members to keep training")
        members = {a_id.hex(), b_id.hex()}
        for s in after:
            assert set(s["version_vector"]) <= members, s["version_vector"]
            assert s["version_vector"][s["node_id"]] == s["own_seq"]
        rejected = after[0]["updates_rejected"]
        assert rejected.get("rpc_Gossip_unauthenticated", 0) >= 4, rejected
        for rpc in ("Fetch", "Snapshot", "Accumulators"):
            assert rejected.get(f"rpc_{rpc}_unauthenticated", 0) >= 2, rejected
    finally:
        stop_all(nodes)
