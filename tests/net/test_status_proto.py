"""``NodeStatus`` ⇄ ``StatusReply``: the field lists agree and nothing is lost.

The conversions in net/control.py are written out field by field; these tests
fail when a field is added to the dataclass or the proto and not to both and
to the conversions.
"""

from __future__ import annotations

from dataclasses import fields

from seedfl.core.status import NodeStatus, PeerStatus
from seedfl.net.control import status_from_proto, status_to_proto
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb


def _full() -> NodeStatus:
    """A status in which every field holds a non-default value."""
    peer = PeerStatus(node_id="0f" * 16, name="b", address="10.0.0.2:7440", state="suspect",
                      last_seen_s=1.5, rtt_ms=0.25, updates_from=9, lag=3, connected=True)
    return NodeStatus(
        node_id="ab" * 16, name="a", software_version="9.9.9", protocol_version=7,
        swarm_key="01" * 16, config_fingerprint="02" * 32, state="training", uptime_s=3.5,
        address="10.0.0.1:7440", own_seq=11, applied_total=33, vv_digest="03" * 32,
        applied_vv_digest="04" * 32, version_vector={"ab" * 16: 11, "0f" * 16: 22},
        divergence=1e-7, loss_ema=0.75, steps_per_s=2.25, payload_bytes_in=5,
        payload_bytes_out=6, total_bytes_in=700, total_bytes_out=800, updates_sent=12,
        updates_received=13, updates_duplicate=14, updates_rejected={"gap": 2},
        peers=(peer,), catchup_state="done", catchup_progress=1.0, model_params=1000,
        trainable_params=900, metrics={"coalescing_ratio": 1.5}, recovery="clean start",
        catchup_method="replay", pool_digest="05" * 32, pool_vv_digest="06" * 32,
        diverged="training diverged", links=5, active_view=8)


def test_field_lists_are_the_same() -> None:
    assert {f.name for f in fields(NodeStatus)} == {
        f.name for f in pb.StatusReply.DESCRIPTOR.fields}
    assert {f.name for f in fields(PeerStatus)} == {
        f.name for f in pb.PeerRow.DESCRIPTOR.fields}


def test_round_trip_keeps_every_field() -> None:
    full = _full()
    reply = status_to_proto(full)
    # Every proto field is set (a conversion that forgets one leaves it at zero).
    for f in pb.StatusReply.DESCRIPTOR.fields:
        value = getattr(reply, f.name)
        assert value or (hasattr(value, "__len__") and len(value)), f.name
    assert status_from_proto(reply) == full
    assert NodeStatus.from_dict(full.to_dict()) == full


def test_unknown_numbers_stay_unknown() -> None:
    blank = status_from_proto(pb.StatusReply())
    assert blank.divergence is None and blank.loss_ema is None
    assert status_from_proto(status_to_proto(blank)) == blank
