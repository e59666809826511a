"""Replication of updates: push of fresh batches, pull of missing ranges (DESIGN §6, §13).

Push: updates that are fresh here (our own, or pushed to us) are queued per
connected peer for a batching window (adapted to the update rate so that a
frame carries about ``batch_target`` updates, never more than
``batch_max_window`` late), coalesced into contiguous runs per
origin, clipped by what the peer's last known vector says it holds, and sent as
Batch frames. Updates we pulled are not pushed on: they are repair, and the
neighbours repair themselves through the same pull (which also keeps pushed
traffic within the per-origin rate cap everywhere).

Pull (Scuttlebutt-style anti-entropy): peers exchange Vectors on connect (whole)
and periodically (the entries that changed since, and a digest of the whole:
swarm/vector_delta.py), skipping the periodic one to a peer that holds or was pushed
everything we hold (it would tell it nothing; at least one goes every
``vector_max_interval``); a Vector that shows ranges we lack is answered with a Want, bounded
per round, and a range stays "in flight" until it arrives or its timeout passes,
so it is not asked of every peer at once. A Want is answered from the store with
Batch frames of bounded size.

Inbound batches, pushed, pulled or fetched by catch-up (``on_fetched``), take
one path (``_admit``) and are validated: malformed, oversized, seq too far beyond our
vector (max_gap), invalid code (an optional predicate from the codec), a new
origin beyond ``max_origins``, a *pushed* batch for our own origin beyond what
we made (nobody else makes our updates; pulled ones are our lost log tail
coming back), and, for pushed updates, the per-origin rate cap (token bucket; pulled updates are
exempt so that a late joiner catches up at full speed). Each rejection reason
has a counter. This module knows no sockets, no clock and no membership; the
peer state machine tells it who is connected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from seedfl.core.seeds import NODE_ID_BYTES
from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.swarm import messages as m
from seedfl.swarm.budget import Budgets
from seedfl.swarm.messages import Outgoing, Range
from seedfl.swarm.vector_delta import Told

_NEVER = float("-inf")


@dataclass(frozen=True)
class GossipConfig:
    """batch_window, batch_target, batch_max_window: the push window adapts to
    the rate of fresh updates so that a frame carries about batch_target
    updates: it is batch_target / rate, at least batch_window and at most
    batch_max_window seconds, and a peer's queue is flushed at once when it
    holds batch_target updates. Every frame costs ~25 bytes of protobuf, gRPC
    and HTTP/2 framing (and gRPC core's flow-control frames) whatever it holds,
    so a slow node (5 steps/s) waits up to 1.5 s to put 7 updates in a frame
    and a busy one fills a frame in a fraction of that (measured by `seedfl
    bench wire`, TCP payload per update per peer: a fixed 50 ms window 55.7 B
    at 5 steps/s; 0.8 s and 16 updates 24.8 B; 1.5 s and 32 updates, with the
    vector skip and deferred pulls below, 13.4 B at 5 and 3.5 B at ~28
    steps/s). 1.5 s stays below the 2 s membership ping interval, so a link
    that pushes is never pinged. The cost is latency: an
    update reaches peers up to batch_max_window later, so their replicas lag
    (stale) by up to one window of our steps. batch_target 1 gives the old
    fixed batch_window.
    vector_interval: period of Vector exchange per peer; shorter repairs lost
    pushes sooner at the cost of one vector (≈24 bytes per origin) per peer.
    vector_max_interval: a peer that already holds, or was pushed, everything
        we hold gets no periodic Vector (it would show it nothing to pull),
        except one at least this often, to repair a push the peer dropped
        while it believes it is in sync with us. The replica-divergence
        estimate needs Vectors too (the applied digest and projection travel
        in them) but only compares equal applied states, so one also goes
        when our applied state has stayed the same for a vector_interval and
        the peer has not seen it. The skip trusts that a pushed frame arrives
        unless its connection dies (TCP; a reconnect sends a Vector at once);
        on a transport that drops single frames set it to vector_interval.
        Shorter measures divergence more often; longer saves a Vector frame
        per peer per period.
    vector_entries: most entries (origins whose count grew since this peer
        was last told, ≈22 bytes each) in one periodic Vector; the rest go in
        the next. Bounds a node's vector traffic at links × vector_entries per
        vector_interval whatever the swarm's size; lower makes a busy large
        swarm's peers learn later what they could pull from us (pushes are
        not delayed). The Vector on connect is whole.
    vector_refresh_interval: a whole Vector goes to a peer at least this
        often. Never (inf) on TCP, where a link loses no frame, so the deltas
        add up exactly; on a transport that drops single frames (the scale
        simulator) a lost delta is repaired only by this.
    want_timeout: how long an asked range is not asked again.
    rate_cap, rate_burst: pushed updates per second per origin, and the bucket
    depth in seconds of rate_cap; excess is dropped (and later pulled, which
    the gap and Want bounds limit).
    max_gap: a batch starting more than this many seqs beyond what we hold of
    its origin is refused.
    max_origins: origins this node keeps (ours included); a batch that would
    add one more is refused (``origin_cap``), so a flood of made-up origins
    cannot grow every table without bound. Generous by default: an origin is
    a node that ever trained in the swarm.
    conn_rate_factor: one connection may push at most this many times rate_cap
        updates per second, whatever origins it names (its excess is dropped
        and counted as ``conn_rate_cap``, and later pulled). Without relay a
        peer pushes only its own updates, so 4 leaves room for bursts and a
        few relayed origins; while relaying (a partial view) a peer forwards
        every origin's updates, so the factor is raised to the number of
        members (``set_swarm_size``): each origin is still held to rate_cap.
    serve_rate, serve_burst: updates per second one peer may make us serve
        (Want answers and Fetch calls together), and the bucket depth in
        seconds of serve_rate; beyond it a Want or Fetch is answered in part
        and the rest counted as ``serve_rate_cap`` (the asker asks again
        later). A joiner fetching a 10 M-update log at 1 M/s needs 10 s; lower
        it to bound what one member can make a node read and send.
    relay: push updates received by push on to our other peers. None (the
    default) is automatic: the peer state machine turns it on while some alive
    member is not linked to us (a bounded active view, swarm/views.py) and off
    in a full mesh, where every relayed push is a duplicate (1.5 per update in
    a 3-node run). False leaves multi-hop delivery to the vector exchange, one
    vector_interval per hop; True always relays."""

    batch_window: float = 0.05
    batch_target: int = 32
    batch_max_window: float = 1.5
    vector_interval: float = 5.0
    vector_max_interval: float = 30.0
    vector_entries: int = 64
    vector_refresh_interval: float = float("inf")
    want_timeout: float = 2.0
    max_want_updates: int = 8192
    max_want_ranges: int = 64
    max_batch_updates: int = 4096
    rate_cap: float = 50.0
    rate_burst: float = 10.0
    max_gap: int = 10_000
    max_origins: int = 4096
    relay: bool | None = None
    conn_rate_factor: float = 4.0
    serve_rate: float = 1_000_000.0
    serve_burst: float = 4.0


@dataclass
class PeerReplica:
    """What we know of one connected peer's replica."""

    known: dict[bytes, int] = field(default_factory=dict)  # counts it surely holds
    vector: VersionVector | None = None  # its last Vector
    projection: float | None = None
    applied_digest: bytes = b""  # digest of what its trainer had applied at `projection`
    pending: dict[bytes, list[tuple[int, int]]] = field(default_factory=dict)
    flush_at: float | None = None
    pending_n: int = 0  # updates queued for this peer
    last_vector: float = _NEVER  # when we last sent it a Vector
    vector_checked: float = _NEVER  # when we last asked whether one was due
    checked_digest: bytes = b""  # our applied digest at that moment
    sent_digest: bytes = b""  # our applied digest in the last Vector we sent it
    pushed: dict[bytes, int] = field(default_factory=dict)  # how far we pushed each origin
    updates_from: int = 0
    told: Told = field(default_factory=Told)  # what of our vector it was told
    last_whole: float = _NEVER  # when it last got our whole vector


class Gossip:
    def __init__(
        self, store: UpdateStore, on_deliver: Callable[[UpdateBatch], None],
        config: GossipConfig | None = None, code_valid: Callable[[int], bool] | None = None,
        self_id: bytes | None = None,
    ) -> None:
        self.config = config or GossipConfig()
        self.self_id = self_id
        self.store = store
        self.on_deliver = on_deliver
        self.code_valid = code_valid
        self.peers: dict[bytes, PeerReplica] = {}
        self.have: dict[bytes, int] = dict(store.version_vector().items())
        self.asked: dict[bytes, tuple[int, float]] = {}  # origin → (end asked, until)
        cfg = self.config
        # Pushes per origin (bounded by max_origins), pushes per peer connection, and
        # what each peer makes us serve; the per-peer ones are kept across reconnects
        # (a reconnect must not refill them) and bounded like the member table.
        self.origin_budget = Budgets(cfg.rate_cap, cfg.rate_burst)
        self.conn_budget = Budgets(cfg.rate_cap * cfg.conn_rate_factor, cfg.rate_burst, 1024)
        self.serve_budget = Budgets(cfg.serve_rate, cfg.serve_burst, 1024)
        # linked origin → (claimed count, when to ask, who claimed it) (_askable)
        self._deferred: dict[bytes, tuple[int, float, bytes]] = {}
        self.applied: tuple[bytes, float | None, int] = (b"", None, 0)
        # Relay pushed updates now (config.relay, or what SwarmPeer decides when it is None).
        self.relaying = bool(self.config.relay)
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._rotate = 0
        self._rate = 0.0  # EMA of fresh updates queued per second (the adaptive window)
        self._rate_at = _NEVER
        self._digest: tuple[int, bytes] = (-1, b"")  # (_grown when computed, digest)
        self._grown = 0  # bumped whenever a count in have grows

    def set_swarm_size(self, members: int) -> None:
        """Members alive (us included): while relaying, one connection carries
        all of their pushes, so its budget is rate_cap per member."""
        cfg = self.config
        factor = max(cfg.conn_rate_factor, members) if self.relaying else cfg.conn_rate_factor
        self.conn_budget.set_rate(cfg.rate_cap * factor)

    def vector(self, entries: VersionVector | None = None) -> m.Vector:
        """Our whole Vector, or a partial one of ``entries`` (swarm/vector_delta.py)."""
        digest, projection, total = self.applied
        vv = self.store.version_vector() if entries is None else entries
        return m.Vector(vv, digest, projection, total, partial=entries is not None,
                        vv_digest=self.vv_digest())

    def vv_digest(self) -> bytes:
        """Digest of our whole version vector, recomputed only after it grew."""
        if self._digest[0] != self._grown:
            self._digest = (self._grown, VersionVector(self.have).digest())
        return self._digest[1]

    def _grew(self, origin: bytes) -> None:
        self._grown += 1
        for replica in self.peers.values():
            replica.told.grew(origin)

    # -- connections ----------------------------------------------------------------

    def on_connect(self, peer_id: bytes, now: float) -> list[Outgoing]:
        replica = PeerReplica(last_vector=now, vector_checked=now,
                              sent_digest=self.applied[0], last_whole=now)
        self.peers[peer_id] = replica
        replica.told.whole(self.have)
        return [(peer_id, self.vector())]

    def on_disconnect(self, peer_id: bytes) -> None:
        self.peers.pop(peer_id, None)
        self._deferred.pop(peer_id, None)

    # -- push -----------------------------------------------------------------------

    def publish(self, batch: UpdateBatch, now: float) -> None:
        """Our own new updates: store and queue for every peer (the trainer has them)."""
        for fresh in self.store.add(batch):
            self.have[fresh.origin] = fresh.end_seq
            self._grew(fresh.origin)
            self._queue(fresh, now)

    def _window(self, n: int, now: float) -> float:
        """The push window after ``n`` fresh updates at ``now`` (see GossipConfig)."""
        cfg = self.config
        if self._rate_at != _NEVER and now > self._rate_at:
            # An EMA over about a second: follows a node that speeds up or stalls.
            dt = now - self._rate_at
            alpha = min(1.0, dt)
            self._rate = (1 - alpha) * self._rate + alpha * (n / dt)
        self._rate_at = now
        if cfg.batch_target <= 1 or self._rate <= 0:
            return cfg.batch_window
        return min(cfg.batch_max_window, max(cfg.batch_window, cfg.batch_target / self._rate))

    def _queue(self, batch: UpdateBatch, now: float) -> None:
        window = self._window(len(batch), now)
        for replica in self.peers.values():
            if replica.known.get(batch.origin, 0) >= batch.end_seq:
                continue
            replica.pending.setdefault(batch.origin, []).append((batch.first_seq, batch.end_seq))
            replica.pending_n += len(batch)
            if replica.flush_at is None:
                replica.flush_at = now + window
            if replica.pending_n >= max(1, self.config.batch_target):
                replica.flush_at = now  # a full frame: no reason to wait

    def _flush(self, peer_id: bytes, replica: PeerReplica) -> list[Outgoing]:
        out: list[Outgoing] = []
        for origin, ranges in replica.pending.items():
            known = replica.known.get(origin, 0)
            for start, end in _coalesce(ranges):
                out += self._batches(peer_id, origin, max(start, known), end)
        replica.pending.clear()
        replica.pending_n = 0
        replica.flush_at = None
        return out

    def _batches(self, peer_id: bytes, origin: bytes, start: int, end: int) -> list[Outgoing]:
        end = min(end, self.have.get(origin, 0))
        out: list[Outgoing] = []
        step = self.config.max_batch_updates
        replica = self.peers.get(peer_id)
        for lo in range(start, end, step):
            batch = self.store.get_range(origin, lo, min(lo + step, end))
            if replica is not None and replica.pushed.get(origin, 0) >= lo:
                replica.pushed[origin] = max(replica.pushed.get(origin, 0), batch.end_seq)
            self.counters["sent_updates"] += len(batch)
            self.counters["payload_bytes_out"] += len(batch.codes)
            out.append((peer_id, m.Batch(batch)))
        return out

    # -- inbound batches ------------------------------------------------------------

    def on_batch(self, peer_id: bytes, frame: m.Batch, now: float) -> list[Outgoing]:
        batch = frame.batch
        self.counters["payload_bytes_in"] += len(batch.codes)
        replica = self.peers.get(peer_id)
        if replica is not None and len(batch.origin) == NODE_ID_BYTES:
            known = replica.known.get(batch.origin, 0)
            if batch.first_seq <= known < batch.end_seq:
                replica.known[batch.origin] = batch.end_seq
        asked_end, until = self.asked.get(batch.origin, (0, _NEVER))
        solicited = batch.first_seq < asked_end and now <= until
        for run in self._admit(batch, solicited, now, peer_id):
            if replica is not None:
                replica.updates_from += len(run)
            self.on_deliver(run)
            if not solicited and self.relaying:
                self._queue(run, now)
        out = self.flush_due(now)
        if solicited and replica is not None:
            out += self._pull_on(peer_id, replica, batch.origin, now)
        return out

    def _pull_on(self, peer_id: bytes, replica: PeerReplica, origin: bytes,
                 now: float) -> list[Outgoing]:
        """An asked range of ``origin`` is now held: forget the ask and, once half
        of what is in flight came in, ask the peer for more of what its vector
        shows. One Want holds at most max_want_ranges origins, and after a
        whole Vector only deltas come, which name an origin only when it
        grows: without this a node lacking many origins (a joiner, a long
        partition) would ask 64 of them per whole Vector. With it the pull
        is a window of ranges in flight, refilled as answers arrive."""
        asked = self.asked.get(origin)
        if asked is None or self.have.get(origin, 0) < asked[0]:
            return []
        del self.asked[origin]
        room = self.config.max_want_ranges - len(self.asked)
        if replica.vector is None or room < self.config.max_want_ranges // 2:
            return []
        wants = self._wants(replica.vector, now, peer_id, max_ranges=room)
        if not wants:
            return []
        self.counters["wants_pipelined"] += 1
        return [(peer_id, m.Want(tuple(wants)))]

    def on_fetched(self, batch: UpdateBatch, wanted: m.Want, now: float) -> list[UpdateBatch]:
        """A batch a Fetch call answered (catch-up): the same validation and
        counters as a pushed or pulled batch, and it must lie inside a range we
        asked for (``unsolicited`` otherwise). Stored but not delivered: the
        caller decides when the trainer gets it. Returns the fresh runs."""
        self.counters["payload_bytes_in"] += len(batch.codes)
        if not any(o == batch.origin and lo <= batch.first_seq and batch.end_seq <= hi
                   for o, lo, hi in wanted.ranges):
            self.rejected["unsolicited"] += len(batch)
            return []
        return self._admit(batch, True, now)

    def _admit(self, batch: UpdateBatch, solicited: bool, now: float,
               peer_id: bytes | None = None) -> list[UpdateBatch]:
        """The one inbound path: every update that enters the store from a peer
        passes here. Pushed (unsolicited) batches also face the own-origin rule
        and the per-origin rate cap. Returns the fresh runs stored."""
        cfg = self.config
        reason = self._invalid(batch)
        if reason is not None:
            self.rejected[reason] += len(batch)
            return []
        have = self.have.get(batch.origin, 0)
        if batch.end_seq <= have:
            self.counters["duplicates"] += len(batch)
            return []
        if batch.first_seq > have + cfg.max_gap:
            self.rejected["gap"] += len(batch)
            return []
        if batch.origin not in self.have and len(self.have) >= cfg.max_origins:
            self.rejected["origin_cap"] += len(batch)
            return []
        if not solicited and batch.origin == self.self_id:
            self.rejected["own_origin"] += len(batch)
            return []
        if not solicited:
            start = max(batch.first_seq, have)
            caps = [(self.origin_budget, batch.origin, "rate_cap")]
            if peer_id is not None:
                caps.append((self.conn_budget, peer_id, "conn_rate_cap"))
            for budgets, key, reason in caps:
                granted = self._grant(budgets, key, batch.end_seq - start, reason, now)
                if granted == 0:
                    return []
                batch = batch.slice(batch.first_seq, start + granted)
        self.counters["duplicates"] += max(0, min(batch.end_seq, have) - batch.first_seq)
        try:
            fresh = self.store.add(batch)
        except ValueError:  # slots present for an origin whose batches carry none, or reverse
            self.rejected["malformed"] += len(batch)
            return []
        for run in fresh:
            self.have[run.origin] = max(self.have.get(run.origin, 0), run.end_seq)
            self._grew(run.origin)
            self.counters["received_updates"] += len(run)
        return fresh

    def _grant(self, budgets: Budgets, key: bytes, n: int, reason: str, now: float) -> int:
        """Up to ``n`` from ``key``'s budget; what is refused is counted as ``reason``."""
        granted = budgets.take(key, n, now)
        if granted < n:
            self.rejected[reason] += n - granted
        return granted

    def _invalid(self, batch: UpdateBatch) -> str | None:
        if len(batch.origin) != NODE_ID_BYTES or not batch.codes:
            return "malformed"
        if len(batch) > self.config.max_batch_updates:
            return "oversized"
        if self.code_valid is not None and not all(self.code_valid(c) for c in set(batch.codes)):
            return "invalid_code"
        return None

    # -- pull -----------------------------------------------------------------------

    def on_vector(self, peer_id: bytes, frame: m.Vector, now: float) -> list[Outgoing]:
        replica = self.peers.get(peer_id)
        if replica is None:
            return []
        if frame.partial and replica.vector is not None:
            replica.vector = replica.vector.merged(frame.vv)
        else:
            replica.vector = frame.vv
        replica.projection = frame.projection
        replica.applied_digest = frame.applied_vv_digest
        for origin, count in frame.vv.items():
            if count > replica.known.get(origin, 0):
                replica.known[origin] = count
        if frame.vv_digest and frame.vv_digest == self.vv_digest():
            # Its whole vector is ours: it holds everything we do, told in 8 bytes.
            self.counters["vectors_in_sync"] += 1
            replica.vector = VersionVector(self.have)
            replica.known.update(self.have)
        wants = self._wants(frame.vv, now, peer_id)
        return [(peer_id, m.Want(tuple(wants)))] if wants else []

    def _askable(self, origin: bytes, count: int, peer_id: bytes, now: float) -> int:
        """How far to ask for ``origin`` now when ``peer_id``'s Vector shows ``count``.

        A linked peer's own updates reach us by its push within its batching
        window, so a Vector that shows them first would make us pull what is
        already on its way (a duplicate per update). For such an origin the
        claim is deferred by a window (``tick`` asks then, for what is still
        missing); other origins (relayed, or not linked) are asked at once.
        """
        if origin not in self.peers:
            return count
        if origin not in self._deferred:
            ripe_at = now + self.config.batch_max_window + 0.5
            self._deferred[origin] = (count, ripe_at, peer_id)
        return self.have.get(origin, 0)

    def _ripe_wants(self, now: float) -> list[Outgoing]:
        """Deferred claims (``_askable``) whose window passed: ask for what is
        still missing, of the peer that showed it."""
        out: list[Outgoing] = []
        for origin, (count, ripe_at, peer_id) in list(self._deferred.items()):
            if now < ripe_at:
                continue
            del self._deferred[origin]
            if peer_id not in self.peers or count <= self.have.get(origin, 0):
                continue
            wants = self._wants(VersionVector({origin: count}), now, defer=False)
            if wants:
                out.append((peer_id, m.Want(tuple(wants))))
        return out

    def _wants(self, theirs: VersionVector, now: float, peer_id: bytes = b"",
               defer: bool = True, max_ranges: int | None = None) -> list[Range]:
        cfg = self.config
        most = cfg.max_want_ranges if max_ranges is None else min(max_ranges, cfg.max_want_ranges)
        lacking = [(o, c) for o, c in theirs.items() if c > self.have.get(o, 0)]
        if defer:
            lacking = [(o, c) for o, c in ((o, self._askable(o, c, peer_id, now))
                                           for o, c in lacking) if c > self.have.get(o, 0)]
        if not lacking:
            return []
        # Rotate the starting origin so a tight budget still serves every origin in turn.
        self._rotate = (self._rotate + 1) % len(lacking)
        lacking = lacking[self._rotate:] + lacking[:self._rotate]
        budget, wants = cfg.max_want_updates, []
        for origin, count in lacking:
            start = self.have.get(origin, 0)
            asked_end, until = self.asked.get(origin, (0, _NEVER))
            if now <= until:
                start = max(start, asked_end)
            end = min(count, start + budget, self.have.get(origin, 0) + cfg.max_gap)
            if end <= start:
                continue
            wants.append((origin, start, end))
            self.asked[origin] = (end, now + cfg.want_timeout)
            budget -= end - start
            if budget <= 0 or len(wants) >= most:
                break
        return wants

    def on_want(self, peer_id: bytes, frame: m.Want, now: float) -> list[Outgoing]:
        cfg = self.config
        budget, out = cfg.max_want_updates, []
        if len(frame.ranges) > cfg.max_want_ranges:
            self.rejected["want_too_many_ranges"] += len(frame.ranges) - cfg.max_want_ranges
        for origin, start, end in frame.ranges[: cfg.max_want_ranges]:
            start = max(0, start)
            held = min(end, self.have.get(origin, 0))
            if held - start > budget:
                self.rejected["want_truncated"] += held - start - budget
                held = start + budget
            if held <= start:
                continue
            granted = self._grant(self.serve_budget, peer_id, held - start, "serve_rate_cap", now)
            if granted <= 0:
                break
            out += self._batches(peer_id, origin, start, start + granted)
            budget -= granted
        return out

    def serve_fetch(self, peer_id: bytes, request: m.Want, now: float) -> list[UpdateBatch]:
        """The batches answering one Fetch call from ``peer_id``: what we hold of
        each range, within the peer's serving budget (``serve_rate``)."""
        out, stored = [], self.store.version_vector()
        for origin, start, end in request.ranges:
            start, held = max(0, start), min(end, stored.get(origin))
            if held <= start:
                continue
            granted = self._grant(self.serve_budget, peer_id, held - start, "serve_rate_cap", now)
            if granted <= 0:
                break
            batch = self.store.get_range(origin, start, start + granted)
            out.append(batch)
            # Payload sent like a push or a Want answer (status payload_bytes_out).
            self.counters["fetch_served_updates"] += granted
            self.counters["payload_bytes_out"] += len(batch.codes)
        return out

    def flush_due(self, now: float) -> list[Outgoing]:
        """Push what has waited its batching window (everything when now is +inf)."""
        out: list[Outgoing] = []
        for peer_id, replica in self.peers.items():
            if replica.flush_at is not None and now >= replica.flush_at:
                out += self._flush(peer_id, replica)
        return out

    # -- time -----------------------------------------------------------------------

    def tick(self, now: float) -> list[Outgoing]:
        out = self.flush_due(now) + self._ripe_wants(now)
        whole: m.Vector | None = None
        cfg = self.config
        for peer_id, replica in self.peers.items():
            if now - replica.vector_checked < cfg.vector_interval:
                continue
            replica.vector_checked = now
            digest = self.applied[0]
            # Our applied state stopped changing and the peer has not seen it:
            # the moment a divergence measurement becomes possible.
            settled = digest == replica.checked_digest != replica.sent_digest
            replica.checked_digest = digest
            if not settled and now - replica.last_vector < cfg.vector_max_interval \
                    and self._in_sync(replica):
                self.counters["vectors_skipped"] += 1
                continue
            replica.last_vector, replica.sent_digest = now, digest
            if now - replica.last_whole >= cfg.vector_refresh_interval:
                replica.last_whole = now
                replica.told.whole(self.have)
                whole = whole or self.vector()
                out.append((peer_id, whole))
                continue
            entries = replica.told.take(self.have, replica.known, peer_id, cfg.vector_entries)
            self.counters["vector_entries_sent"] += len(entries.items())
            out.append((peer_id, self.vector(entries)))
        out += self._retry_wants(now)
        self.asked = {o: a for o, a in self.asked.items() if now <= a[1]}
        return out

    def _retry_wants(self, now: float) -> list[Outgoing]:
        """Ranges asked whose answer did not come within want_timeout (the peer
        left, or a lossy network dropped it): ask again, of a peer whose vector
        shows them. A partial Vector tells each change once, so no new Vector
        would bring the range up again; the copies we hold of our peers'
        vectors (merged deltas) still know who has it."""
        by_peer: dict[bytes, dict[bytes, int]] = {}
        for origin, (end, until) in list(self.asked.items()):
            if now <= until or self.have.get(origin, 0) >= end:
                continue
            holders = [(r.vector.get(origin), p) for p, r in self.peers.items()
                       if r.vector is not None and r.vector.get(origin) > self.have.get(origin, 0)]
            if holders:
                del self.asked[origin]
                count, peer_id = max(holders)
                by_peer.setdefault(peer_id, {})[origin] = count
        out: list[Outgoing] = []
        for peer_id, counts in by_peer.items():  # each as one Vector would: within the bounds
            wants = self._wants(VersionVector(counts), now, defer=False)
            if wants:
                self.counters["wants_retried"] += 1
                out.append((peer_id, m.Want(tuple(wants))))
        return out

    def _in_sync(self, replica: PeerReplica) -> bool:
        """The peer holds (its vector or its pushes say so), was pushed, or has
        queued for it, everything we hold: a Vector would show it nothing."""
        for origin, count in self.have.items():
            reach = max(replica.known.get(origin, 0), replica.pushed.get(origin, 0))
            if reach < count and max((e for _, e in replica.pending.get(origin, ())),
                                     default=0) < count:
                return False
        return True


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching [start, end) ranges."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
