"""``NodeStatus``: what one node reports about itself, as a typed value.

One frozen dataclass per row, stdlib only. Field names are those of
``StatusReply`` in ``proto/seedfl/v1/control.proto``
(tests/net/test_status_proto.py pins the two lists together); byte fields are
lowercase hex, optional numbers are None until measured. Metrics, history,
``seedfl status``, the demo and the benches read this type;
``to_dict``/``from_dict`` give the JSON form that ``seedfl status --json``
prints. Adding a field touches this dataclass, the proto and the two
conversions in ``net/control.py``.

This module does not know where the numbers come from (the node's
``status_view.py``) or how they travel (``net/control.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["NodeStatus", "PeerStatus"]


@dataclass(frozen=True)
class PeerStatus:
    node_id: str  # hex
    name: str
    address: str
    state: str  # alive / suspect / dead / left
    last_seen_s: float  # seconds since we last heard from it; -1 = never
    rtt_ms: float  # 0 until measured
    updates_from: int  # updates of its origin we received from it
    lag: int  # updates it is behind us, as far as we know
    connected: bool = False  # a link to it is open (it is in our active view)


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    name: str
    software_version: str
    protocol_version: int
    swarm_key: str
    config_fingerprint: str
    state: str  # starting / joining / syncing / training / relaying / leaving
    uptime_s: float
    address: str
    own_seq: int  # updates this node produced (across restarts)
    applied_total: int  # updates the trainer has applied, all origins
    vv_digest: str
    applied_vv_digest: str
    version_vector: dict[str, int]  # hex origin -> count held in the store
    divergence: float | None
    loss_ema: float | None
    steps_per_s: float
    payload_bytes_in: int
    payload_bytes_out: int
    total_bytes_in: int  # counted: serialized messages + fixed framing
    total_bytes_out: int
    updates_sent: int
    updates_received: int
    updates_duplicate: int
    updates_rejected: dict[str, int]  # reason -> count
    peers: tuple[PeerStatus, ...]
    catchup_state: str
    catchup_progress: float
    model_params: int
    trainable_params: int
    metrics: dict[str, float]
    recovery: str
    catchup_method: str
    pool_digest: str
    pool_vv_digest: str
    diverged: str  # "" unless this node's own steps stopped for divergence
    links: int = 0  # open peer links: the active view (swarm/views.py)
    active_view: int = 0  # the most links this node keeps; 0 = no bound (full mesh)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (peers as a list of dicts)."""
        out = asdict(self)
        out["peers"] = [asdict(p) for p in self.peers]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeStatus:
        """Inverse of ``to_dict``; unknown keys are ignored (a newer node's)."""
        names = {f.name for f in fields(cls)}
        peer_names = {f.name for f in fields(PeerStatus)}
        values = {k: v for k, v in data.items() if k in names}
        values["peers"] = tuple(
            PeerStatus(**{k: v for k, v in row.items() if k in peer_names})
            for row in data.get("peers", ()))
        return cls(**values)

    @property
    def alive_peers(self) -> int:
        return sum(1 for p in self.peers if p.state == "alive")
