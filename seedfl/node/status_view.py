"""What a running node reports: the Status snapshot and the progress lines.

``status()`` gathers the trainer's, swarm's and transport's counters into a
``NodeStatus`` (core/status.py), which the Control service serves, metrics and
history read and ``seedfl status`` prints. It is one consistent snapshot:

- everything the loop owns (store, swarm, mesh, servicer counters) is read in
  one synchronous pass on the loop, with no await in between;
- everything the trainer owns comes from one immutable ``TrainerState``
  (``trainer_state.py``), never from the engine's live counters. It is the
  trainer's latest state when that one has the same own count as the store,
  else the state that came with the last own batch the loop stored. So
  ``version_vector[node_id] == own_seq`` holds in every reply unless a foreign
  update of our origin got into the store (the fuzz test checks exactly that).

Seed-pool mode (DESIGN §5): ``pool_digest`` is the digest of the exact
accumulators at the applied vector ``pool_vv_digest`` (the trainer refreshes
the pair at most once a second while busy); ``catchup_method`` and the
``catchup_state_bytes`` metric say how this node caught up and what the model
state cost on the wire; ``coalescing_ratio`` is updates per regeneration.

Replica divergence (DESIGN §6): every Vector frame carries the digest of the
sender's applied version vector and a fixed random projection of its θ taken
at that state; for peers whose digest equals ours, the difference of
projections over the norm of the projected elements estimates the relative L2
difference of the two replicas (the divergence). The last measured value is kept.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from seedfl import PROTOCOL_VERSION, __version__
from seedfl.core.status import NodeStatus, PeerStatus
from seedfl.net.mesh import FRAMING_BYTES

if TYPE_CHECKING:
    from seedfl.node.ports import StatusSource
    from seedfl.training.trainer_state import TrainerState


def diverged_reason(error: BaseException | None) -> str:
    """The status ``diverged`` field: "" unless the trainer stopped for divergence."""
    from seedfl.training.engine import DivergedError

    return str(error) if isinstance(error, DivergedError) else ""


class StatusView:
    def __init__(self, node: StatusSource) -> None:
        self.node = node
        self.divergence: float | None = None
        self.divergence_peers = 0

    def trainer_state(self) -> TrainerState:
        """The trainer's numbers that agree with the store (see the module doc)."""
        node = self.node
        latest, own = node.trainer.state, node.store.version_vector().get(node.node_id)
        for st in (latest, node.published):
            if st.own_seq == own:
                return st
        return latest  # our origin's count moved outside our own steps (see module doc)

    def refresh_projection(self) -> None:
        """Publish our applied-state fingerprint and measure divergence."""
        node = self.node
        st = node.trainer.state
        digest, projection = st.applied_digest, st.projection
        node.swarm.set_applied(digest, projection, st.applied_total)
        worst, peers = None, 0
        for replica in node.swarm.gossip.peers.values():
            if replica.applied_digest == digest and replica.projection is not None:
                scale = max(st.projection_norm, 1e-30)  # see Engine.projection
                diff = abs(projection - replica.projection) / scale
                worst = diff if worst is None else max(worst, diff)
                peers += 1
        if worst is not None:
            self.divergence, self.divergence_peers = worst, peers

    def peers_have_our_updates(self) -> bool:
        node = self.node
        ours = node.trainer.state.own_seq  # made, whether or not the loop stored it yet
        replicas = node.swarm.gossip.peers.values()
        return all(
            r.vector is not None and r.vector.get(node.node_id) >= ours for r in replicas)

    def status(self) -> NodeStatus:
        """One consistent ``NodeStatus`` of this node (see the module doc)."""
        node = self.node
        eng, swarm = node.engine, node.swarm
        st = self.trainer_state()
        es = st.stats
        stats = swarm.stats()
        vv = node.store.version_vector()
        client = node.mesh.client_bytes()
        srv = node.servicer
        msgs_in = client["messages_in"] + srv.messages_in
        msgs_out = client["messages_out"] + srv.messages_out
        counters = stats.counters
        rejected = dict(stats.rejected)
        rejected.update({f"rpc_{k}": v for k, v in srv.rejected.items()})
        if node.mesh.malformed:
            rejected["link_malformed"] = node.mesh.malformed
        if node.mesh.overflowed_links:
            rejected["link_not_reading"] = node.mesh.overflowed_links
        if st.refused:
            rejected["trainer_refused"] = st.refused
        bits = 1 if eng.codec.wire_bits == 1 else 8
        apply_regens = es.regenerations - int(node.catchup.stats.get("pool_regenerations", 0))
        peers = tuple(PeerStatus(
            node_id=row.node_id.hex(), name=row.name, address=row.address, state=row.state,
            last_seen_s=-1.0 if row.last_seen is None else row.last_seen,
            rtt_ms=0.0 if row.rtt is None else 1000 * row.rtt,
            updates_from=row.updates_from, lag=0 if row.lag is None else row.lag,
            connected=row.connected,
        ) for row in stats.peers)
        metrics = {
            "clipped_codes": float(es.clipped),
            # Updates per regeneration when applying updates (a pool join's
            # rebuild regenerates without applying any: not counted here).
            "coalescing_ratio": es.coalesced_terms / apply_regens if apply_regens else 1.0,
            "regenerations": float(es.regenerations),
            "drained_batches_per_drain": st.drained_batches / max(1, st.drains),
            "apply_seconds_total": es.apply_seconds,
            "step_seconds_ema": es.step_seconds_ema or 0.0,
            "last_g": es.last_g,
            # swarm.max_staleness: 1 while own steps wait for the slowest live peer.
            "staleness_held": float(st.held_by_staleness),
            "staleness_waits": float(st.staleness_waits),
            "dropped_frames_no_link": float(node.mesh.dropped_frames),
            "divergence_peers": float(self.divergence_peers),
            "recovery_seconds": node.recovery.seconds,
            "recovery_replayed": float(node.recovery.replayed_updates),
            "recovery_truncated_bytes": float(node.recovery.truncated_bytes),
            **node.catchup.metrics(),
        }
        metrics.update({f"counter_{k}": float(v) for k, v in counters.items()})
        pool = st.pool
        if eng.pool is not None:
            metrics["pool_size"] = float(eng.pool.size)
            metrics["pool_slots_used"] = float(pool.slots_used if pool else 0)
        return NodeStatus(
            node_id=node.node_id.hex(), name=node.name,
            software_version=__version__, protocol_version=PROTOCOL_VERSION,
            swarm_key=node.cfg.swarm_key().hex(),
            config_fingerprint=node.cfg.fingerprint().hex(),
            state=node.phase, uptime_s=time.monotonic() - node.started,
            address=node.address,
            own_seq=st.own_seq, applied_total=st.applied_total,
            vv_digest=vv.digest().hex(), applied_vv_digest=st.applied_digest.hex(),
            version_vector=vv.to_dict(),
            divergence=self.divergence, loss_ema=es.loss_ema,
            steps_per_s=node.trainer.steps_per_second(),
            # One code per update: 1 byte, or 1 bit for sign1 (packed on the wire).
            payload_bytes_in=-(-counters.get("payload_bytes_in", 0) * bits // 8),
            payload_bytes_out=-(-counters.get("payload_bytes_out", 0) * bits // 8),
            total_bytes_in=client["in"] + srv.bytes_in + FRAMING_BYTES * msgs_in,
            total_bytes_out=client["out"] + srv.bytes_out + FRAMING_BYTES * msgs_out,
            updates_sent=counters.get("sent_updates", 0),
            updates_received=counters.get("received_updates", 0),
            updates_duplicate=counters.get("duplicates", 0), updates_rejected=rejected,
            peers=peers, catchup_state=node.catchup.state,
            catchup_progress=node.catchup.progress,
            model_params=node.model_params,
            trainable_params=sum(p.numel() for p in node.trainable),
            metrics=metrics, recovery=node.recovery.describe(),
            catchup_method=node.catchup.method,
            pool_digest=pool.digest.hex() if pool else "",
            pool_vv_digest=pool.applied_vv_digest.hex() if pool else "",
            diverged=diverged_reason(node.trainer.error),
            # Peers with an open link, as the mesh holds them (not the view's plan).
            links=sum(1 for lk in node.mesh.links.values() if lk),
            active_view=swarm.views.config.active_size,
        )

    async def progress_lines(self, every: float = 5.0) -> None:
        """One line of progress every few seconds on stderr (`seedfl run`)."""
        while True:
            await asyncio.sleep(every)
            s = self.status()
            loss = "-" if s.loss_ema is None else f"{s.loss_ema:.4f}"
            print(f"[{s.name}] step {s.own_seq}  applied {s.applied_total}  "
                  f"loss~{loss}  {s.steps_per_s:.2f} steps/s  peers {s.alive_peers} "
                  f"(links {s.links})  "
                  f"out {s.total_bytes_out} B", file=sys.stderr, flush=True)
