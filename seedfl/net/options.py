"""The one place that decides gRPC channel and server options (DESIGN §9).

Client and server take their options from here so that their keepalive
settings agree: a client that pings more often than the server allows gets
its connection closed with GOAWAY ``too_many_pings``. Every node is both a
client and a server, so both sets come from the same :class:`WireOptions`.

Also here: explicit message size limits and the default deadline of each
kind of RPC. This module knows nothing of what travels on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Deadlines:
    """Default deadline, in seconds, of each kind of RPC.

    hello: a handshake is one round trip; a peer that cannot answer in 5 s is
        not one we want to gossip with yet. Too short would refuse peers on a
        congested Wi-Fi link, too long delays noticing a black-holed address.
    gossip: the stream is long-lived; its deadline only recycles it. Liveness
        is decided by keepalive and SWIM pings, never by this deadline, and a
        reconnect costs one Hello plus a vector exchange, so an hour is cheap.
    fetch: one catch-up request of at most a few thousand ranges; a minute
        covers a slow link, and the caller retries what is still missing.
    snapshot: a whole model state in chunks; transfers are resumable, so the
        deadline bounds one attempt rather than the whole catch-up.
    status: a local control query; if it takes more than 3 s the node is
        stuck, and saying so is the useful answer.
    accumulators: K·4 bytes (256 KiB at most) taken between two training
        steps of the server; 60 s covers a slow step on a large model.
    """

    hello: float = 5.0
    gossip: float = 3600.0
    fetch: float = 60.0
    snapshot: float = 600.0
    status: float = 3.0
    accumulators: float = 60.0


@dataclass(frozen=True)
class WireOptions:
    """Keepalive and size limits shared by every channel and server.

    keepalive_time_s: how often a side pings an idle connection. Dead peers
        behind NAT or a pulled cable are found in about time + timeout;
        shorter finds them sooner but costs a few bytes per ping per peer.
    keepalive_timeout_s: how long to wait for the ping ack before closing.
    permit_without_calls: ping even with no RPC open, so an idle connection
        to a peer stays warm and a dead one is noticed before we need it.
    min_recv_ping_interval_s: the server accepts client pings this often.
        It must be at most keepalive_time_s, or our own clients would be
        punished with too_many_pings; half leaves room for timer jitter.
    max_message_bytes: the largest message either side sends or accepts.
        An update batch is about one byte per update and snapshot chunks are
        1 MiB, so 16 MiB is generous while still bounding what a hostile
        peer can make us buffer (gRPC's own default receive limit is 4 MiB).
    bdp_probe: gRPC's bandwidth-delay-product probe, which sends an HTTP/2
        PING (answered by an ACK) along with bursts of data to grow the
        flow-control window. Gossip carries a few bytes per update, so the
        probe more than doubled the bytes on a gossip connection (measured with
        a capture); off by default. Turn it on for snapshot catch-up over
        long, fat links, where a window grown beyond 64 KiB speeds it up.
    """

    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    permit_without_calls: bool = True
    min_recv_ping_interval_s: float = 10.0
    max_message_bytes: int = 16 * MiB
    bdp_probe: bool = False
    deadlines: Deadlines = Deadlines()

    def __post_init__(self) -> None:
        if self.min_recv_ping_interval_s > self.keepalive_time_s:
            raise ValueError(
                "min_recv_ping_interval_s must not exceed keepalive_time_s, "
                "or peers would close each other's connections with too_many_pings"
            )
        if self.keepalive_timeout_s <= 0 or self.keepalive_time_s <= 0:
            raise ValueError("keepalive time and timeout must be positive")
        if self.max_message_bytes < 64 * 1024:
            raise ValueError("max_message_bytes below 64 KiB cannot carry a full batch")

    def _common(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", int(self.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            # 0: keep pinging an idle connection without a data frame in between.
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.bdp_probe", int(self.bdp_probe)),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]

    def channel_options(self) -> list[tuple[str, int]]:
        """Options for ``grpc.aio.insecure_channel`` / ``secure_channel``."""
        return [
            *self._common(),
            # Reconnect to a peer that comes back within seconds, not minutes.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 10_000),
        ]

    def server_options(self) -> list[tuple[str, int]]:
        """Options for ``grpc.aio.server``."""
        return [
            *self._common(),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                int(self.min_recv_ping_interval_s * 1000),
            ),
            # 0: never close a connection for pinging; the interval above is
            # already lenient and a closed gossip stream costs a resync.
            ("grpc.http2.max_ping_strikes", 0),
        ]


DEFAULT = WireOptions()
