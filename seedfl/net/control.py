"""The Control service: one node's Status, served and fetched over gRPC.

The domain side is a plain dict of JSON values (what ``seedfl status --json``
prints): byte fields are hex strings, optional numbers may be None, the peer
table is a list of dicts. ``status_to_proto``/``status_from_proto`` are the
only conversions between that dict and ``StatusReply``; the node produces the
dict through a callback, so this module knows nothing about training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from seedfl.net.options import DEFAULT, WireOptions
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb
from seedfl.net.proto.seedfl.v1 import control_pb2_grpc as pb_grpc
from seedfl.net.tls import TLSFiles

CONTROL_SERVICE = "seedfl.v1.Control"

_BYTES = ("node_id", "swarm_key", "config_fingerprint", "vv_digest", "applied_vv_digest",
          "pool_digest", "pool_vv_digest")
_OPTIONAL = ("divergence", "loss_ema")
_PEER_FIELDS = ("name", "address", "state", "last_seen_s", "rtt_ms", "updates_from", "lag")


def status_to_proto(status: dict[str, Any]) -> pb.StatusReply:
    reply = pb.StatusReply()
    for field in reply.DESCRIPTOR.fields:
        name = field.name
        if name not in status or status[name] is None:
            continue
        value = status[name]
        if name in _BYTES:
            setattr(reply, name, bytes.fromhex(value))
        elif name == "peers":
            for row in value:
                peer = reply.peers.add(node_id=bytes.fromhex(row["node_id"]))
                for key in _PEER_FIELDS:
                    if row.get(key) is not None:
                        setattr(peer, key, row[key])
        elif name in ("version_vector", "updates_rejected", "metrics"):
            getattr(reply, name).update(value)
        else:
            setattr(reply, name, value)
    return reply


def status_from_proto(reply: pb.StatusReply) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in reply.DESCRIPTOR.fields:
        name = field.name
        value = getattr(reply, name)
        if name in _BYTES:
            out[name] = value.hex()
        elif name in _OPTIONAL:
            out[name] = value if reply.HasField(name) else None
        elif name == "peers":
            out[name] = [
                {"node_id": p.node_id.hex(), **{k: getattr(p, k) for k in _PEER_FIELDS}}
                for p in value
            ]
        elif name in ("version_vector", "updates_rejected", "metrics"):
            out[name] = dict(value)
        else:
            out[name] = value
    return out


class ControlServicer(pb_grpc.ControlServicer):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusReply:
        return status_to_proto(self._snapshot())


def add_control(server: grpc.aio.Server, snapshot: Callable[[], dict[str, Any]]) -> None:
    pb_grpc.add_ControlServicer_to_server(ControlServicer(snapshot), server)  # type: ignore[no-untyped-call]


def fetch_status(address: str, timeout: float = 5.0,
                 tls: TLSFiles | None = None) -> dict[str, Any]:
    """``fetch_status_async`` for code without an event loop (CLI, benches, demo)."""
    import asyncio

    return asyncio.run(fetch_status_async(address, timeout, tls=tls))


async def fetch_status_async(
    address: str, timeout: float | None = None, options: WireOptions = DEFAULT,
    tls: TLSFiles | None = None,
) -> dict[str, Any]:
    """Ask the node at ``address`` for its Status (over TLS when ``tls`` is
    given: a node with TLS on serves nothing in plaintext). Raises
    grpc.aio.AioRpcError."""
    if tls is None:
        channel = grpc.aio.insecure_channel(address, options=options.channel_options())
    else:
        channel = grpc.aio.secure_channel(address, tls.channel_credentials(),
                                          options=[*options.channel_options(),
                                                   *tls.channel_options()])
    async with channel:
        stub = pb_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Status(pb.StatusRequest(),
                                  timeout=timeout or options.deadlines.status)
    return status_from_proto(reply)
