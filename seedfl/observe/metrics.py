"""Prometheus metrics for one node, built with ``prometheus_client``.

``render(status)`` turns a ``NodeStatus`` into the text exposition format
0.0.4 through a collector that ``prometheus_client`` serialises (HELP/TYPE
lines, label escaping, NaN/Inf); every name starts with ``seedfl_``.
Monotonic numbers are counters ending in ``_total``; the rest are gauges.
Peers are one gauge labelled by membership state (alive, suspect, dead, left
always present); rejected updates and swarm event counters are counters
labelled by reason or event. Values that are unknown (loss before the first
step, divergence before a peer shares our state) are left out, not written
as 0. ``deploy/grafana/seedfl.json`` charts these names (a test checks that
every name it queries is one this module exports).

The collector is built per scrape from one status value, so a scrape sees one
consistent snapshot; nothing is registered in prometheus_client's global
registry (two nodes in one process do not collide). This module does not
serve HTTP (``metrics_server.py``) or know where the status comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from seedfl.core.status import NodeStatus

__all__ = ["CONTENT_TYPE", "PEER_STATES", "exported_names", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PEER_STATES = ("alive", "suspect", "dead", "left")

# NodeStatus attribute -> (metric name without prefix, type, help). Order is output order.
_TOP = [
    ("own_seq", "own_seq", "gauge", "Next sequence number of this node's own updates"),
    ("applied_total", "applied_total", "counter", "Updates applied to this node's model"),
    ("uptime_s", "uptime_seconds", "gauge", "Seconds since the node started"),
    ("loss_ema", "loss_ema", "gauge", "Exponential moving average of the training loss"),
    ("steps_per_s", "steps_per_second", "gauge", "Own optimisation steps per second"),
    ("divergence", "divergence", "gauge",
     "Relative replica divergence against peers with the same applied state"),
    ("payload_bytes_in", "payload_bytes_in_total", "counter", "Update payload bytes received"),
    ("payload_bytes_out", "payload_bytes_out_total", "counter", "Update payload bytes sent"),
    ("total_bytes_in", "bytes_in_total", "counter",
     "Bytes received as counted by the node: serialized messages plus fixed framing"),
    ("total_bytes_out", "bytes_out_total", "counter",
     "Bytes sent as counted by the node: serialized messages plus fixed framing"),
    ("updates_sent", "updates_sent_total", "counter", "Updates sent to peers"),
    ("updates_received", "updates_received_total", "counter", "New updates received"),
    ("updates_duplicate", "updates_duplicate_total", "counter",
     "Updates received that were already held"),
    ("catchup_progress", "catchup_progress", "gauge", "Catch-up progress, 0 to 1"),
    ("model_params", "model_params", "gauge", "Parameters in the model"),
    ("trainable_params", "trainable_params", "gauge", "Parameters that updates change"),
    ("links", "links", "gauge", "Open peer links (the active view)"),
    ("active_view", "active_view", "gauge", "Most peer links this node keeps (0: no bound)"),
]
# Keys of NodeStatus.metrics that only grow; everything else there is a gauge.
_METRIC_COUNTERS = {"clipped_codes", "apply_seconds_total", "dropped_frames_no_link",
                    "catchup_fetched_updates"}
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")
_INFO_LABELS = ("node_id", "name", "software_version", "protocol_version", "state",
                "catchup_state")


def _name(key: str) -> str:
    return "seedfl_" + _NAME_BAD.sub("_", key)


def _family(kind: str, name: str, help_: str,
            labels: tuple[str, ...] = ()) -> CounterMetricFamily | GaugeMetricFamily:
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    # prometheus_client appends _total to counter samples itself.
    return cls(name.removesuffix("_total") if kind == "counter" else name, help_,
               labels=list(labels))


class _StatusCollector:
    def __init__(self, status: NodeStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status
        info = _family("gauge", "seedfl_node_info", "Identity and phase of this node (always 1)",
                       _INFO_LABELS)
        info.add_metric([str(getattr(s, k)) for k in _INFO_LABELS], 1)
        yield info
        for attr, name, kind, help_ in _TOP:
            value = getattr(s, attr)
            if value is not None:
                fam = _family(kind, _name(name), help_)
                fam.add_metric([], value)
                yield fam
        states = dict.fromkeys(PEER_STATES, 0)
        for peer in s.peers:
            states[peer.state] = states.get(peer.state, 0) + 1
        peers = _family("gauge", "seedfl_peers", "Known peers by membership state", ("state",))
        for state, n in states.items():
            peers.add_metric([state], n)
        yield peers
        if s.updates_rejected:
            rej = _family("counter", "seedfl_updates_rejected_total",
                          "Updates refused, by reason", ("reason",))
            for reason, n in sorted(s.updates_rejected.items()):
                rej.add_metric([reason], n)
            yield rej
        events = sorted((k.removeprefix("counter_"), v) for k, v in s.metrics.items()
                        if k.startswith("counter_"))
        if events:
            ev = _family("counter", "seedfl_swarm_events_total",
                         "Swarm state machine event counters", ("event",))
            for event, v in events:
                ev.add_metric([event], v)
            yield ev
        for key in sorted(s.metrics):
            if key.startswith("counter_"):
                continue
            counter = key in _METRIC_COUNTERS
            name = _name(key if not counter or key.endswith("_total") else key + "_total")
            fam = _family("counter" if counter else "gauge", name, f"Node metric {key}")
            fam.add_metric([], s.metrics[key])
            yield fam


def render(status: NodeStatus) -> str:
    """The exposition text (format 0.0.4) for one status value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry).decode("utf-8")


def exported_names(status: NodeStatus) -> set[str]:
    """Every metric family name ``render(status)`` writes (for dashboards and tests)."""
    return {line.split(" ")[2] for line in render(status).splitlines()
            if line.startswith("# TYPE ")}
