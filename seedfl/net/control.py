"""The Control service: one node's Status, served and fetched over gRPC.

The domain side is ``NodeStatus`` (core/status.py). ``status_to_proto`` and
``status_from_proto`` are the only conversions between it and
``StatusReply``, written out field by field so that a field added to one side
and not the other fails the round-trip test (tests/net/test_status_proto.py)
instead of being skipped. The node produces the value through a callback, so
this module knows nothing about training.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from seedfl.core.status import NodeStatus, PeerStatus
from seedfl.net.options import DEFAULT, WireOptions
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb
from seedfl.net.proto.seedfl.v1 import control_pb2_grpc as pb_grpc
from seedfl.net.tls import TLSFiles

CONTROL_SERVICE = "seedfl.v1.Control"

StatusProvider = Callable[[], NodeStatus]


def _peer_to_proto(p: PeerStatus) -> pb.PeerRow:
    return pb.PeerRow(node_id=bytes.fromhex(p.node_id), name=p.name, address=p.address,
                      state=p.state, last_seen_s=p.last_seen_s, rtt_ms=p.rtt_ms,
                      updates_from=p.updates_from, lag=p.lag, connected=p.connected)


def _peer_from_proto(p: pb.PeerRow) -> PeerStatus:
    return PeerStatus(node_id=p.node_id.hex(), name=p.name, address=p.address, state=p.state,
                      last_seen_s=p.last_seen_s, rtt_ms=p.rtt_ms,
                      updates_from=p.updates_from, lag=p.lag, connected=p.connected)


def status_to_proto(s: NodeStatus) -> pb.StatusReply:
    reply = pb.StatusReply(
        node_id=bytes.fromhex(s.node_id), name=s.name, software_version=s.software_version,
        protocol_version=s.protocol_version, swarm_key=bytes.fromhex(s.swarm_key),
        config_fingerprint=bytes.fromhex(s.config_fingerprint), state=s.state,
        uptime_s=s.uptime_s, address=s.address, own_seq=s.own_seq,
        applied_total=s.applied_total, vv_digest=bytes.fromhex(s.vv_digest),
        steps_per_s=s.steps_per_s,
        payload_bytes_in=s.payload_bytes_in, payload_bytes_out=s.payload_bytes_out,
        total_bytes_in=s.total_bytes_in, total_bytes_out=s.total_bytes_out,
        updates_sent=s.updates_sent, updates_received=s.updates_received,
        updates_duplicate=s.updates_duplicate,
        peers=[_peer_to_proto(p) for p in s.peers],
        catchup_state=s.catchup_state, catchup_progress=s.catchup_progress,
        applied_vv_digest=bytes.fromhex(s.applied_vv_digest), model_params=s.model_params,
        trainable_params=s.trainable_params, recovery=s.recovery,
        catchup_method=s.catchup_method, pool_digest=bytes.fromhex(s.pool_digest),
        pool_vv_digest=bytes.fromhex(s.pool_vv_digest), diverged=s.diverged,
        links=s.links, active_view=s.active_view,
    )
    reply.version_vector.update(s.version_vector)
    reply.updates_rejected.update(s.updates_rejected)
    reply.metrics.update(s.metrics)
    if s.divergence is not None:
        reply.divergence = s.divergence
    if s.loss_ema is not None:
        reply.loss_ema = s.loss_ema
    return reply


def status_from_proto(r: pb.StatusReply) -> NodeStatus:
    return NodeStatus(
        node_id=r.node_id.hex(), name=r.name, software_version=r.software_version,
        protocol_version=r.protocol_version, swarm_key=r.swarm_key.hex(),
        config_fingerprint=r.config_fingerprint.hex(), state=r.state, uptime_s=r.uptime_s,
        address=r.address, own_seq=r.own_seq, applied_total=r.applied_total,
        vv_digest=r.vv_digest.hex(), applied_vv_digest=r.applied_vv_digest.hex(),
        version_vector=dict(r.version_vector),
        divergence=r.divergence if r.HasField("divergence") else None,
        loss_ema=r.loss_ema if r.HasField("loss_ema") else None,
        steps_per_s=r.steps_per_s,
        payload_bytes_in=r.payload_bytes_in, payload_bytes_out=r.payload_bytes_out,
        total_bytes_in=r.total_bytes_in, total_bytes_out=r.total_bytes_out,
        updates_sent=r.updates_sent, updates_received=r.updates_received,
        updates_duplicate=r.updates_duplicate, updates_rejected=dict(r.updates_rejected),
        peers=tuple(_peer_from_proto(p) for p in r.peers),
        catchup_state=r.catchup_state, catchup_progress=r.catchup_progress,
        model_params=r.model_params, trainable_params=r.trainable_params,
        metrics=dict(r.metrics), recovery=r.recovery, catchup_method=r.catchup_method,
        pool_digest=r.pool_digest.hex(), pool_vv_digest=r.pool_vv_digest.hex(),
        diverged=r.diverged, links=r.links, active_view=r.active_view,
    )


class ControlServicer(pb_grpc.ControlServicer):
    def __init__(self, status: StatusProvider) -> None:
        self._status = status

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusReply:
        return status_to_proto(self._status())


def add_control(server: grpc.aio.Server, status: StatusProvider) -> None:
    pb_grpc.add_ControlServicer_to_server(ControlServicer(status), server)  # type: ignore[no-untyped-call]


def fetch_status(address: str, timeout: float = 5.0,
                 tls: TLSFiles | None = None) -> NodeStatus:
    """``fetch_status_async`` for code without an event loop (CLI, benches, demo)."""
    import asyncio

    return asyncio.run(fetch_status_async(address, timeout, tls=tls))


async def fetch_status_async(
    address: str, timeout: float | None = None, options: WireOptions = DEFAULT,
    tls: TLSFiles | None = None,
) -> NodeStatus:
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
