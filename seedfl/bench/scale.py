"""Scale simulator: the swarm protocol at N = 10, 100, 1000 nodes, in one process.

Every node is a real ``SwarmPeer`` (membership, gossip, bounded views: the
code a ``seedfl run`` node runs, minus sockets and tensors) on the in-memory
network (swarm/transport.py) with a manual clock, ``follow_views`` on: nodes
dial whom their active view asks for, starting from one bootstrap address.
The run, for each N:

1. **Join**: nodes arrive over ``join_s`` seconds, each given the address of
   one random earlier node; then ``settle_s`` seconds pass.
2. **Measure** for ``measure_s`` seconds: every live node publishes one
   update (one code byte) at exponential intervals of mean 1 / ``step_rate``;
   churn replaces nodes throughout (each second, ``churn`` · N nodes leave on
   average, half announcing it and half crashing, and as many new nodes join
   through a random live one); every frame is lost with probability ``loss``
   and delayed uniformly in ``delay``.
3. **Drain**: production stops; the run goes on until every live node holds
   every update published (or ``drain_s`` passes).

Reported per N: ``complete`` (every update reached every node live at the
end), dissemination time p50 / p99 (from publication until the last node that
was live then and is live at the end holds it; over ``sample`` updates),
bytes per update per node (all frames sent from the measure phase on,
encoded as protobuf (net/convert.py) plus gRPC/HTTP/2 framing
(``net.mesh.FRAMING_BYTES``), divided by updates × mean live nodes, and
broken down by frame kind), duplicates per update per node (updates that
arrived at a node already holding them), and connections per node (mean and
the maximum seen at any node at any sampled moment) against the view bound.

Not modelled: handshakes (unary calls, once per link), TCP/IP headers, the
trainer (updates are applied nowhere), catch-up by Fetch/Snapshot (joiners
pull through the vector exchange). The lossy network drops single frames,
which TCP does not, so partial vectors go every ``vector_interval``
(``vector_max_interval`` equal to it) and a whole one every
``vector_refresh_interval``, as GossipConfig advises for such a transport
(docs/SCALE.md). Time is simulated; the wall time of a run is reported too.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.net import convert
from seedfl.net.mesh import FRAMING_BYTES
from seedfl.swarm import messages as m
from seedfl.swarm.clock import ManualClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.peer import PeerConfig, SwarmPeer
from seedfl.swarm.transport import InMemoryNetwork
from seedfl.swarm.views import ViewConfig

__all__ = ["ScaleRun", "bench_scale", "simulate", "sizes_up_to"]

_KEY, _FP, _MODEL = bytes(16), bytes(32), bytes(range(32))


@dataclass(frozen=True)
class ScaleRun:
    """One simulated swarm; see the module docstring for each knob."""

    nodes: int
    seed: int = 0
    step_rate: float = 0.05
    measure_s: float = 60.0
    min_updates: int = 400
    churn: float = 0.002
    loss: float = 0.05
    delay: tuple[float, float] = (0.005, 0.05)
    join_s: float = 20.0
    settle_s: float = 20.0
    drain_s: float = 120.0
    dt: float = 0.05
    sample: int = 300
    vector_refresh_interval: float = 30.0
    views: ViewConfig = field(default_factory=ViewConfig)


def _config(run: ScaleRun) -> PeerConfig:
    base = GossipConfig()
    return PeerConfig(gossip=replace(base, vector_max_interval=base.vector_interval,
                                     vector_refresh_interval=run.vector_refresh_interval),
                      views=run.views)


class _Sim:
    def __init__(self, run: ScaleRun) -> None:
        self.run, self.rng = run, random.Random(run.seed)
        self.clock = ManualClock()
        self.net = InMemoryNetwork(self.clock, random.Random(run.seed + 1), loss=run.loss,
                                   delay=run.delay, follow_views=True)
        self.config = _config(run)
        self.peers: dict[bytes, SwarmPeer] = {}
        self.joined: dict[bytes, float] = {}
        self.own: Counter[bytes] = Counter()  # origin → updates published
        self.departed: set[bytes] = set()
        self.next_step: dict[bytes, float] = {}
        self.tracked: dict[tuple[bytes, int], tuple[float, dict[bytes, float]]] = {}
        self.track_p = 1.0
        self.counting = False
        self.bytes: Counter[str] = Counter()
        self.live_samples: list[int] = []
        self.max_links = 0
        self.link_samples: list[float] = []
        self._sizes: dict[int, tuple[m.Frame, int]] = {}
        self._serial = 0
        send = self.net.send

        def counted(src: bytes, dst: bytes, frame: m.Frame) -> None:
            if self.counting:
                self.bytes[type(frame).__name__.lower()] += self._size(frame)
            send(src, dst, frame)

        self.net.send = counted  # type: ignore[method-assign]

    def _size(self, frame: m.Frame) -> int:
        # One Vector or Membership table is sent to every peer in a tick: encode it once.
        hit = self._sizes.get(id(frame))
        if hit is not None and hit[0] is frame:
            return hit[1]
        size = int(convert.frame_to_proto(frame).ByteSize()) + FRAMING_BYTES
        self._sizes[id(frame)] = (frame, size)
        return size

    def add(self, bootstrap: bytes | None) -> bytes:
        self._serial += 1
        node_id = self._serial.to_bytes(4, "big") * 4
        hello = m.Hello(m.PROTOCOL_VERSION, "0.1.0", _KEY, _FP, _MODEL, node_id, 0,
                        f"n{self._serial}", f"sim:{self._serial}")

        def deliver(batch: UpdateBatch, me: bytes = node_id) -> None:
            now = self.clock.now()
            for u in batch.updates():
                hit = self.tracked.get((u.origin, u.seq))
                if hit is not None:
                    hit[1].setdefault(me, now)

        peer = SwarmPeer(hello, UpdateStore(), deliver, self.clock, self.config)
        self.peers[node_id] = peer
        self.joined[node_id] = self.clock.now()
        self.net.add(peer, [bootstrap] if bootstrap is not None else [])
        return node_id

    def remove(self, node_id: bytes, graceful: bool) -> None:
        peer = self.peers.pop(node_id)
        self.next_step.pop(node_id, None)
        self.joined.pop(node_id, None)
        self.departed.add(node_id)
        if graceful:
            self.net.dispatch(node_id, peer.leave())
        self.net.remove(node_id, graceful)

    def publish(self, node_id: bytes) -> None:
        peer, now = self.peers[node_id], self.clock.now()
        seq = self.own[node_id]
        self.own[node_id] += 1
        if self.rng.random() < self.track_p:
            self.tracked[(node_id, seq)] = (now, {node_id: now})
        batch = UpdateBatch(node_id, seq, bytes([self.rng.randrange(1, 255)]))
        self.net.dispatch(node_id, peer.publish(batch))

    def step(self, producing: bool) -> None:
        self._sizes.clear()
        now = self.clock.now()
        if producing:
            for node_id, at in list(self.next_step.items()):
                if at <= now:
                    self.publish(node_id)
                    self.next_step[node_id] = now + self.rng.expovariate(self.run.step_rate)
        self.net.step(self.run.dt)

    def sample_links(self) -> None:
        # Open connections as the network holds them (a link a view just dropped
        # counts until it is closed), not the view's own bookkeeping.
        per: Counter[bytes] = Counter()
        for pair in self.net.connected:
            per.update(pair)
        links = [per[p] for p in self.peers]
        self.max_links = max(self.max_links, *links)
        self.link_samples.append(sum(links) / len(links))
        self.live_samples.append(len(self.peers))

    def required(self) -> dict[bytes, int]:
        """Updates every live node must hold: all of a live origin's; of one that
        left or crashed, what got out before (what some live node holds: a
        crash loses what was still in its push window, and on this lossy
        network a Leave's last push can be lost too)."""
        vvs = [p.gossip.store.version_vector() for p in self.peers.values()]
        return {o: (n if o not in self.departed else max((vv.get(o) for vv in vvs), default=0))
                for o, n in self.own.items()}

    def complete(self) -> bool:
        need = self.required()
        for peer in self.peers.values():
            vv = peer.gossip.store.version_vector()
            if any(vv.get(o) < n for o, n in need.items()):
                return False
        return True


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def simulate(run: ScaleRun) -> dict[str, Any]:
    """One swarm of ``run.nodes``; the report described in the module docstring."""
    t_wall = time.perf_counter()
    sim, n = _Sim(run), run.nodes
    ids: list[bytes] = []
    ticks = int(run.join_s / run.dt)
    for i in range(n):  # joins spread over join_s, each through a random earlier node
        ids.append(sim.add(sim.rng.choice(ids) if ids else None))
        # ticks·(i+1)//n − ticks·i//n: whole ticks between joins, which a
        # per-join int() would round to none once N > join_s / dt.
        for _ in range(ticks * (i + 1) // n - ticks * i // n):
            sim.step(False)
    while sim.clock.now() < run.join_s + run.settle_s:
        sim.step(False)
    measure_s = max(run.measure_s, run.min_updates / (n * run.step_rate))
    sim.track_p = min(1.0, run.sample / (n * run.step_rate * measure_s))
    start = sim.clock.now()
    sim.counting = True
    for node_id in sim.peers:
        sim.next_step[node_id] = start + sim.rng.expovariate(run.step_rate)
    joins = leaves = 0
    next_sample = start
    while sim.clock.now() < start + measure_s:
        now = sim.clock.now()
        # Churn: Poisson departures at churn·N per second, each replaced by a joiner.
        for _ in range(_poisson(sim.rng, run.churn * n * run.dt)):
            if len(sim.peers) <= 2:
                break
            gone = sim.rng.choice(sorted(sim.peers))
            sim.remove(gone, graceful=sim.rng.random() < 0.5)
            leaves += 1
            new = sim.add(sim.rng.choice(sorted(sim.peers)))
            sim.next_step[new] = now + sim.rng.expovariate(run.step_rate)
            joins += 1
        sim.step(True)
        if now >= next_sample:
            sim.sample_links()
            next_sample = now + 1.0
    end_produce = sim.clock.now()
    complete = False
    while sim.clock.now() < end_produce + run.drain_s:
        sim.step(False)
        if int(sim.clock.now() / run.dt) % 20 == 0 and sim.complete():
            complete = True
            break
    sim.sample_links()
    published = sum(sim.own.values())
    live = sum(sim.live_samples) / len(sim.live_samples)
    times: list[float] = []
    missing = 0
    need = sim.required()
    for (origin, seq), (t0, seen) in sim.tracked.items():
        if seq >= need.get(origin, 0):
            continue  # went with its departed origin before anyone had it
        # Nodes that were live at publication and are live at the end.
        due = [p for p, j in sim.joined.items() if j <= t0]
        if not due:
            continue
        if any(p not in seen for p in due):
            missing += 1
            continue
        times.append(max(seen[p] for p in due) - t0)
    dups = sum(p.gossip.counters["duplicates"] for p in sim.peers.values())
    total_bytes = sum(sim.bytes.values())
    per = published * live
    return {
        "nodes": n,
        "complete": complete and missing == 0,
        "updates": published,
        "updates_lost_with_a_departed_origin": published - sum(need.values()),
        "tracked_updates": len(times) + missing,
        "tracked_missing": missing,
        "dissemination_p50_s": _percentile(times, 0.50),
        "dissemination_p99_s": _percentile(times, 0.99),
        "dissemination_max_s": max(times, default=None),
        "bytes_per_update_per_node": total_bytes / per,
        "bytes_by_kind_per_update_per_node": {k: v / per for k, v in sorted(sim.bytes.items())},
        "duplicates_per_update_per_node": dups / per,
        "connections_per_node_mean": sum(sim.link_samples) / len(sim.link_samples),
        "connections_per_node_max": sim.max_links,
        "connections_bound": run.views.active_size,
        "joins": joins,
        "leaves": leaves,
        "live_nodes_mean": live,
        "frames_lost": sim.net.counters["lost"],
        "frames_sent": sim.net.counters["sent"],
        "simulated_s": round(sim.clock.now(), 2),
        "wall_s": round(time.perf_counter() - t_wall, 2),
    }


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def sizes_up_to(largest: int) -> tuple[int, ...]:
    """10, 100, 1000, ... below ``largest``, and ``largest`` itself."""
    if largest < 2:
        raise ValueError("a swarm needs at least 2 nodes")
    sizes, n = [], 10
    while n < largest:
        sizes.append(n)
        n *= 10
    return (*sizes, largest)


def bench_scale(sizes: tuple[int, ...] = (10, 100, 1000), seed: int = 0,
                quick: bool = False) -> dict[str, Any]:
    """Each size in ``sizes``, and the ratios the issue's bounds are stated in."""
    runs = {str(n): simulate(ScaleRun(nodes=n, seed=seed, measure_s=20.0 if quick else 60.0,
                                      min_updates=100 if quick else 400))
            for n in sizes}
    small, large = runs[str(min(sizes))], runs[str(max(sizes))]
    p99s, p99l = small["dissemination_p99_s"], large["dissemination_p99_s"]
    return {
        "by_nodes": runs,
        "p99_ratio_largest_to_smallest": None if not p99s or p99l is None else p99l / p99s,
        "bytes_ratio_largest_to_smallest": (large["bytes_per_update_per_node"]
                                            / small["bytes_per_update_per_node"]),
        "all_complete": all(r["complete"] for r in runs.values()),
        "connections_within_bound": all(
            r["connections_per_node_max"] <= r["connections_bound"] for r in runs.values()),
    }
