"""``NodeOptions``: everything a node is told at start, besides the swarm config.

The swarm config (``SwarmConfig``, TOML) is what every member must agree on and
is fingerprinted; these options are this machine's own choices and never
leave it. The CLI (`seedfl run`) only turns flags into a ``NodeOptions``; the
Python API (``seedfl.Node``) takes the same fields as keywords.

This module does not know how a node runs: it is plain data with defaults and
the trade-off of each knob.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seedfl.core.config import SwarmConfig

__all__ = ["DEFAULT_PORT", "NodeOptions"]

# The port a node listens on unless told otherwise: fixed so that firewall rules,
# compose files and static peer lists can name it.
DEFAULT_PORT = 7440


@dataclass(frozen=True)
class NodeOptions:
    # The swarm config: a TOML path, or a parsed SwarmConfig (nothing is read then).
    config: str | Path | SwarmConfig
    # Local training data (.jsonl, .csv, .txt). None: only relay and apply others'.
    data: str | Path | None = None
    # Where the log, checkpoints and node id live. None: the user data dir.
    # One directory is one node identity: two nodes must not share one.
    state_dir: str | Path | None = None
    # host:port of the peer and control service. Port 0 takes any free port
    # (several nodes on one host); a fixed port lets static peer lists name it.
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    # Static peers (host:port), for networks without multicast.
    peers: tuple[str, ...] = ()
    # Advertise and browse mDNS. Off: only ``peers`` are dialed.
    mdns: bool = True
    # The IP used for mDNS and the advertised address on multi-homed hosts.
    interface: str | None = None
    # Human name shown in status; None keeps the one stored in state_dir.
    name: str | None = None
    # cpu, cuda[:n], mps or auto (device_map across GPUs).
    device: str = "cpu"
    # File with the swarm secret; overrides swarm.secret_file.
    secret_file: str | None = None
    # TLS files (PEM); each overrides the config's [tls] key. All three or none;
    # tls_mutual None keeps tls.mutual. TLS costs a handshake per connection
    # and nothing per update; mutual TLS refuses clients without a swarm cert.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_mutual: bool | None = None
    # Stop own steps after this many updates of ours in all (across restarts);
    # the node keeps applying and relaying. None: no limit.
    max_steps: int | None = None
    # With max_steps: stop the node once the steps are done and every peer has them.
    exit_after_steps: bool = False
    # Applied updates between checkpoints: recovery replays at most this many,
    # each checkpoint costs one write of θ.
    checkpoint_every: int = 1000
    # fsync of peers' updates in the log: always is safest and slowest; own
    # updates are always synced before they are sent.
    fsync: Literal["always", "batch", "never"] = "batch"
    # How a joiner catches up: auto picks replay, snapshot or pool from rates.
    catch_up: Literal["auto", "replay", "snapshot", "pool"] = "auto"
    # Seconds of silence before a connected peer is suspected, and then before
    # a suspect is dead. Shorter notices loss sooner and suspects slow links.
    suspect_after: float | None = None
    dead_after: float | None = None
    # Most peers this node keeps links to (its active view, swarm/views.py); it
    # dials more while below half of it. Larger: fewer hops per update and more
    # duplicates and links; 0: link to every member (a full mesh).
    active_view: int = 8
    # Prometheus metrics port (0 = any free port, written to <state>/metrics.addr).
    metrics_port: int | None = None
    # Seconds to pause between own steps, to share a busy machine.
    step_interval: float = 0.0
    # No progress lines on stderr.
    quiet: bool = False

    def __post_init__(self) -> None:
        # A list is the natural thing to pass; keep the value hashable and frozen.
        object.__setattr__(self, "peers", tuple(self.peers))
