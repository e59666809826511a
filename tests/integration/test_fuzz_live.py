"""Random and mutated frames against a live node: it refuses them, keeps
training and keeps answering Status (issue 3, bad input)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from nodekit import TINY_CONFIG, NodeProc, wait_for, write_data

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.net.servicer import SESSION_METADATA
from seedfl.swarm import messages as m
from seedfl.swarm.handshake import Initiator

pytestmark = pytest.mark.timeout(300)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(3)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        elif buf:
            del buf[rng.randrange(len(buf))]
    return bytes(buf)


def _frames(rng: random.Random, me: bytes, victim: bytes) -> tuple[list[bytes], list[bytes]]:
    """(valid frames with hostile content, garbage: mutations of them and random bytes)."""
    origin = bytes(rng.randrange(256) for _ in range(16))
    hostile = [
        m.Batch(UpdateBatch(origin, 0, bytes([0x80] * 5))),          # invalid log8 code
        m.Batch(UpdateBatch(origin, 10**9, b"\x01\x02")),             # far beyond the vector
        m.Batch(UpdateBatch(victim, 0, b"\x05" * 3)),                 # rewrite the victim's log
        m.Batch(UpdateBatch(me, 0, bytes(rng.randrange(1, 128) for _ in range(4000)))),  # flood
        m.Want(((victim, 0, 10**6),)),
        m.Vector(VersionVector({origin: 2**40})),
        m.Ping(nonce=rng.randrange(2**63), sent_at=1.0),
    ]
    good = [convert.frame_to_proto(f).SerializeToString() for f in hostile]
    junk = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) for _ in range(10)]
    return good, [_mutate(rng, rng.choice(good)) for _ in range(20)] + junk


async def _attack(address: str, seed: int, swarm_hello: m.Hello) -> int:
    rng = random.Random(seed)
    sent = 0
    async with grpc.aio.insecure_channel(address) as ch:
        hello = ch.unary_unary("/seedfl.v1.Peer/Hello")
        gossip = ch.stream_stream("/seedfl.v1.Peer/Gossip")
        # Garbage handshakes.
        for _ in range(20):
            with pytest.raises(grpc.aio.AioRpcError):
                await hello(bytes(rng.randrange(256) for _ in range(rng.randint(1, 80))),
                            timeout=5)
        # Without a secret, whoever knows the swarm config may say Hello: the
        # fuzzer does, and attacks through sessions of its own.
        me = bytes(rng.randrange(256) for _ in range(16))

        async def session() -> tuple[tuple[str, str], ...]:
            ours = Initiator(replace(swarm_hello, node_id=me), None).hello
            raw = await hello(convert.hello_to_proto(ours).SerializeToString(), timeout=5)
            reply = convert.hello_reply_from_proto(convert.parse(pb.HelloReply, raw))
            assert reply.accepted and reply.hello is not None, reply
            return ((SESSION_METADATA, reply.session.hex()),)

        victim = (await hello(convert.hello_to_proto(
            Initiator(replace(swarm_hello, node_id=me), None).hello).SerializeToString(),
            timeout=5))
        theirs = convert.hello_reply_from_proto(convert.parse(pb.HelloReply, victim)).hello
        assert theirs is not None
        codes = []
        good, garbage = _frames(rng, me, theirs.node_id)
        for bad in garbage:
            call = gossip(metadata=await session(), timeout=10)
            for data in [*good, bad]:
                await call.write(data)
                sent += 1
            await call.done_writing()
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in call:
                    pass
            codes.append(await call.code())
        # A stream ends with INVALID_ARGUMENT as soon as garbage arrives; a
        # mutation that still parses as a valid frame is refused by the swarm.
        assert set(codes) <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK}, codes
        assert codes.count(grpc.StatusCode.INVALID_ARGUMENT) >= len(garbage) // 2, codes
    return sent


def _swarm_hello(cfg: Path) -> m.Hello:
    """A Hello that passes the victim's compatibility checks (fresh id, no secret)."""
    from seedfl.core.config import load_config
    from seedfl.training.model import load_swarm_model

    conf = load_config(str(cfg))
    return m.Hello(m.PROTOCOL_VERSION, "fuzz", conf.swarm_key(), conf.fingerprint(),
                   load_swarm_model(conf).fingerprint, bytes(16), 1, "fuzzer", "127.0.0.1:9")


def test_live_node_survives_fuzzing(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    node = NodeProc(tmp_path / "victim", cfg, write_data(tmp_path / "d.jsonl", 60, 1), [],
                    extra=["--step-interval", "0.05"])
    try:
        address = node.address()
        before = wait_for(lambda: (s := node.status())["own_seq"] >= 3 and s, 60, "first steps")
        sent = asyncio.run(_attack(address, seed=1234, swarm_hello=_swarm_hello(cfg)))
        assert sent > 50
        after = wait_for(lambda: (s := node.status())["own_seq"] > before["own_seq"] + 5 and s,
                         60, "training to continue after the attack")
        rejected = after["updates_rejected"]
        assert sum(rejected.values()) > 0, rejected
        assert rejected.get("rpc_Hello", 0) >= 20
        # Our own log was never rewritten: the victim's entry counts its own steps only.
        assert after["version_vector"][after["node_id"]] == after["own_seq"]
        assert node.proc.poll() is None
    finally:
        node.terminate()
        assert node.wait(timeout=15) == 0
        node.kill()
