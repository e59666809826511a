"""SWIM-like membership: who is in the swarm, and who is alive (DESIGN §7).

Each member has a state (alive, suspect, dead, left) at an incarnation. A newer
incarnation always wins; at equal incarnation the graver state wins (alive <
suspect < dead < left). Only a node itself raises its incarnation, to refute a
suspicion about it, so the whole swarm ends up agreeing that it lives. ``left``
is sticky for its incarnation: a Leave marks a member left, never dead, and
nothing at that incarnation brings it back.

Claims about a third party are weighed (issue 11): a Leave is taken only from
the node that leaves, a rumour of suspect, dead or left about a member we hear
ourselves is forwarded to it rather than adopted, an incarnation may not jump
by more than ``max_incarnation_step`` on a third party's word, and a member
that only gossip vouches for ages out (``unconfirmed_after``).

Failure detection is local and direct: a node suspects only the peers it is
connected to and that stay silent (every frame counts as a sign of life; pings
keep a quiet link talking and measure rtt). A suspect that nobody hears from
becomes dead. Members known only through gossip take the state gossip gives
them. A node that still hears a peer which gossip calls suspect or dead does
not adopt that: it forwards the rumour to the peer, which refutes it.

Every handler takes ``now`` and returns the frames to send as (peer id, frame);
this module knows neither sockets nor the real clock, nor anything of updates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from seedfl.core.seeds import NODE_ID_BYTES
from seedfl.swarm import messages as m
from seedfl.swarm.messages import MEMBER_STATES, MemberInfo, MemberState, Outgoing

_RANK: dict[MemberState, int] = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
_NEVER = float("-inf")
_MAX_TEXT = 256
_SCAN_S = 0.5  # how often tick looks at members that are not linked to us


@dataclass(frozen=True)
class MembershipConfig:
    """Timeouts, in seconds of the clock the node drives us with.

    ping_interval: a connected peer that has sent nothing for this long is
        pinged. Shorter detects failures sooner, at a few bytes per ping; a
        peer that streams updates is never pinged for liveness.
    rtt_ping_interval: pings of busy peers, only to keep the rtt shown by
        status fresh. Longer saves bytes on a busy link.
    suspect_after: silence of a connected peer before it is suspected. Shorter
        reacts faster; too short suspects healthy peers that are busy or on a
        lossy link (each false suspicion costs the peer a refutation).
    dead_after: time a suspect has to refute before it is declared dead. Longer
        tolerates slow links and long pauses; shorter stops sending to a
        crashed node sooner.
    gossip_interval: period of full-table gossip to each connected peer; changes
        are pushed at once, this only repairs what loss dropped.
    forget_after: dead and left members stop being gossiped after this long
        (they stay as tombstones so stale rumours cannot resurrect them).
    unconfirmed_after: a member we only know from gossip (never connected to
        us) that stays alive this long is suspected here, so that the peers
        that do hear it forward the rumour and it refutes. A member nobody
        hears (made up, or gone without a word) thus dies and is forgotten
        instead of being dialed forever. A real member we cannot reach costs
        one refutation per this interval; longer means fewer of those and
        slower ageing of fakes. Only while ``probe_unlinked`` holds (the node
        means to link every member: a full mesh); in a bounded view most
        members are never linked to us, and N nodes each suspecting N members
        a minute would be N² refutations, so there a member dies of what its
        own links see, or of a dial that fails (``on_dial_failed``).
    max_members: rows of the member table, tombstones included; a new member
        beyond it evicts the oldest tombstone, or is refused
        (``membership_full``) when every row is alive or suspect. It must hold
        the swarm plus the nodes that left it within forget_after (a 1,000-node
        swarm with 0.2 % churn a second leaves ~1,200 tombstones in 600 s), and
        stay within the wire's 4,096 rows of one Membership frame
        (net/convert.py), which a full-table gossip must fit in. Each row is a
        few hundred bytes.
    max_incarnation_step: how far a claim by a *third party* may raise a
        member's incarnation over what we hold. Only a node raises its own
        incarnation, by one per refutation or restart, so a bigger jump is a
        forgery meant to push the victim's refutation past the wire bound
        (which would isolate it). Its own Hello or frames are not limited.
    """

    ping_interval: float = 2.0
    suspect_after: float = 5.0
    dead_after: float = 10.0
    rtt_ping_interval: float = 10.0
    gossip_interval: float = 30.0
    forget_after: float = 600.0
    rtt_alpha: float = 0.2
    max_members: int = 4096
    unconfirmed_after: float = 60.0
    max_incarnation_step: int = 16


@dataclass
class Member:
    node_id: bytes
    name: str
    address: str
    state: MemberState
    incarnation: int
    state_since: float
    last_seen: float | None = None  # last frame received directly from it
    rtt: float | None = None  # exponential moving average, seconds
    connected: bool = False
    last_ping: float = _NEVER
    last_forward: float = _NEVER

    def info(self) -> MemberInfo:
        return MemberInfo(self.node_id, self.name, self.address, self.state, self.incarnation)


def supersedes(state: MemberState, inc: int, old_state: MemberState, old_inc: int) -> bool:
    """Whether a claim (state, inc) replaces what we hold (old_state, old_inc)."""
    if inc != old_inc:
        return inc > old_inc
    return _RANK[state] > _RANK[old_state]


class Membership:
    def __init__(
        self, node_id: bytes, name: str, address: str, incarnation: int,
        config: MembershipConfig | None = None,
    ) -> None:
        self.config = config or MembershipConfig()
        self.me = Member(node_id, name, address, "alive", incarnation, state_since=0.0)
        self._members: dict[bytes, Member] = {}
        self._nonce = 0
        self._last_gossip = _NEVER
        self._expected: set[bytes] = set()  # links closing by agreement (expect_close)
        # Members linked to us, in link order, and how many are alive: a swarm of
        # N costs O(links) per tick and per broadcast, O(N) once per _SCAN_S.
        self._linked: dict[bytes, None] = {}
        self._alive = 0
        self._suspects: set[bytes] = set()  # kept by _set: what the scan must time
        self._graves: dict[bytes, None] = {}  # dead and left, oldest first (kept by _set)
        self._last_scan = _NEVER
        # Age out members never linked to us (unconfirmed_after); SwarmPeer
        # clears it while the active view is partial.
        self.probe_unlinked = True
        self.counters: Counter[str] = Counter()

    @property
    def incarnation(self) -> int:
        return self.me.incarnation

    def get(self, node_id: bytes) -> Member | None:
        return self._members.get(node_id)

    def members(self) -> list[Member]:
        return list(self._members.values())

    def connected(self) -> list[bytes]:
        return list(self._linked)

    def alive_count(self) -> int:
        """Members other than us whose state is alive (kept as states change)."""
        return self._alive

    def table(self, now: float) -> m.Membership:
        """Ourself plus every member not yet forgotten."""
        forget = self.config.forget_after
        keep = [
            mem.info() for mem in self._members.values()
            if mem.state in ("alive", "suspect") or now - mem.state_since <= forget
        ]
        return m.Membership((self.me.info(), *keep))

    def to_disconnect(self, now: float) -> list[bytes]:
        """Connected peers whose stream the node should close: left, or dead and silent."""
        out = []
        for p in self._linked:
            mem = self._members[p]
            silent = mem.last_seen is None or now - mem.last_seen > self.config.dead_after
            if mem.connected and (mem.state == "left" or (mem.state == "dead" and silent)):
                out.append(p)
        return out

    # -- direct contact -------------------------------------------------------------

    def on_connect(self, hello: m.Hello, now: float) -> list[Outgoing]:
        mem = self._members.get(hello.node_id)
        if mem is None:
            mem = self._admit(MemberInfo(hello.node_id, hello.name, hello.address, "alive",
                                         hello.incarnation), now)
        if mem is None:
            return []
        mem.connected, mem.last_seen, mem.last_ping = True, now, _NEVER
        self._linked[hello.node_id] = None
        changed = []
        if hello.incarnation >= mem.incarnation:
            mem.name, mem.address = hello.name[:_MAX_TEXT], hello.address[:_MAX_TEXT]
        if supersedes("alive", hello.incarnation, mem.state, mem.incarnation):
            self._set(mem, "alive", hello.incarnation, now)
            changed.append(mem.info())
        out: list[Outgoing] = [(hello.node_id, self.table(now))]
        return out + self._broadcast(changed, exclude=hello.node_id)

    def expect_close(self, peer_id: bytes) -> None:
        """The link to ``peer_id`` closes by agreement (a view drop, either side):
        the close is no sign of failure, so it does not make the peer suspect."""
        self._expected.add(peer_id)

    def on_disconnect(self, peer_id: bytes, now: float) -> list[Outgoing]:
        mem = self._members.get(peer_id)
        expected = peer_id in self._expected
        self._expected.discard(peer_id)
        if mem is None or not mem.connected:
            return []
        mem.connected = False
        self._linked.pop(peer_id, None)
        if mem.state != "alive" or expected:
            return []
        # A closed stream is a strong hint, not proof: suspect, and let it refute.
        self._set(mem, "suspect", mem.incarnation, now)
        self.counters["suspected"] += 1
        return self._broadcast([mem.info()], exclude=peer_id)

    def on_dial_failed(self, peer_id: bytes, now: float) -> list[Outgoing]:
        """A dial to an alive member we have not heard for suspect_after failed:
        suspect it, so that the peers that do hear it pass the rumour on and it
        refutes; one nobody hears dies. This is how a bounded view (which never
        dials most members) ages out a member that is gone or made up."""
        mem = self._members.get(peer_id)
        if mem is None or mem.connected or mem.state != "alive":
            return []
        if mem.last_seen is not None and now - mem.last_seen <= self.config.suspect_after:
            return []
        self._set(mem, "suspect", mem.incarnation, now)
        self.counters["unreachable"] += 1
        return self._broadcast([mem.info()], exclude=None)

    def on_frame(self, peer_id: bytes, now: float) -> list[Outgoing]:
        """Any frame from a connected peer: it lives; if rumour says otherwise, tell it."""
        mem = self._members.get(peer_id)
        if mem is None:
            return []
        mem.last_seen = now
        if mem.state in ("suspect", "dead") and now - mem.last_forward >= self.config.ping_interval:
            mem.last_forward = now
            return [(peer_id, m.Membership((mem.info(),)))]
        return []

    def on_ping(self, peer_id: bytes, ping: m.Ping, now: float) -> list[Outgoing]:
        return [(peer_id, m.Ack(ping.nonce, ping.sent_at))]

    def on_ack(self, peer_id: bytes, ack: m.Ack, now: float) -> None:
        mem = self._members.get(peer_id)
        sample = now - ack.sent_at
        if mem is None or not 0.0 <= sample < 3600.0:
            return
        a = self.config.rtt_alpha
        mem.rtt = sample if mem.rtt is None else (1 - a) * mem.rtt + a * sample

    # -- gossip -------------------------------------------------------------------

    def on_membership(self, peer_id: bytes, frame: m.Membership, now: float) -> list[Outgoing]:
        changed: list[MemberInfo] = []
        out: list[Outgoing] = []
        for info in frame.members:
            if len(info.node_id) != NODE_ID_BYTES or info.state not in MEMBER_STATES \
                    or info.incarnation < 0:
                self.counters["malformed_member"] += 1
            elif info.node_id == self.me.node_id:
                if self._refute(info):
                    out += [(p, m.Membership((self.me.info(),))) for p in self.connected()]
            else:
                out += self._merge(info, now, changed, first_hand=info.node_id == peer_id)
        return out + self._broadcast(changed, exclude=peer_id)

    def on_leave(self, peer_id: bytes, leave: m.Leave, now: float) -> list[Outgoing]:
        """Only a node announces its own Leave: a Leave naming anyone else is a
        forgery (it would drop a live link) and is ignored. Others learn of a
        departure through membership gossip, which ``_merge`` weighs."""
        if leave.node_id != peer_id:
            self.counters["forged_leave"] += 1
            return []
        known = self._members.get(leave.node_id)
        name, address = (known.name, known.address) if known else ("", "")
        info = MemberInfo(leave.node_id, name, address, "left", leave.incarnation)
        return self.on_membership(peer_id, m.Membership((info,)), now)

    def _refute(self, info: MemberInfo) -> bool:
        me = self.me
        if me.state == "left":
            return False
        if info.incarnation > me.incarnation + self.config.max_incarnation_step:
            # Nobody can know a much newer life of ours than we do: a forgery
            # whose refutation would exceed what peers accept. Ignored.
            self.counters["implausible_incarnation"] += 1
            return False
        if info.incarnation > me.incarnation or (
            info.incarnation == me.incarnation and info.state != "alive"
        ):
            me.incarnation = info.incarnation + 1
            self.counters["refuted"] += 1
            return True
        return False

    def _merge(self, info: MemberInfo, now: float, changed: list[MemberInfo],
               first_hand: bool = False) -> list[Outgoing]:
        mem = self._members.get(info.node_id)
        if mem is None:
            if self._admit(info, now) is not None:
                changed.append(info)
            return []
        if not supersedes(info.state, info.incarnation, mem.state, mem.incarnation):
            return []
        if not first_hand and info.incarnation > mem.incarnation + self.config.max_incarnation_step:
            self.counters["implausible_incarnation"] += 1
            return []
        heard = mem.last_seen is not None and now - mem.last_seen < self.config.suspect_after
        if mem.connected and heard and not first_hand and info.state in ("suspect", "dead", "left"):
            # "left" too: a member that left says so itself (on_leave) and stops
            # talking; a third party's claim about one we still hear is a rumour.
            # We hear it ourselves: pass the rumour on to it so that it refutes.
            if now - mem.last_forward >= self.config.ping_interval:
                mem.last_forward = now
                return [(mem.node_id, m.Membership((info,)))]
            return []
        if info.incarnation > mem.incarnation and info.address:
            mem.name, mem.address = info.name[:_MAX_TEXT], info.address[:_MAX_TEXT]
        self._set(mem, info.state, info.incarnation, now)
        changed.append(mem.info())
        return []

    def _admit(self, info: MemberInfo, now: float) -> Member | None:
        if len(self._members) >= self.config.max_members and not self._evict_tombstone():
            self.counters["membership_full"] += 1
            return None
        mem = Member(info.node_id, info.name[:_MAX_TEXT], info.address[:_MAX_TEXT], info.state,
                     info.incarnation, state_since=now)
        self._members[info.node_id] = mem
        self._alive += mem.state == "alive"
        if mem.state == "suspect":
            self._suspects.add(mem.node_id)
        elif mem.state in ("dead", "left"):
            self._graves[mem.node_id] = None
        return mem

    def _evict_tombstone(self) -> bool:
        # _graves is in the order members died, so the first unlinked one is the
        # oldest tombstone: O(1) per eviction, where a scan was O(members).
        for node_id in self._graves:
            if not self._members[node_id].connected:
                del self._graves[node_id], self._members[node_id]
                return True
        return False

    def _set(self, mem: Member, state: MemberState, inc: int, now: float) -> None:
        if state != mem.state:
            mem.state_since = now
            self._alive += (state == "alive") - (mem.state == "alive")
            if state == "suspect":
                self._suspects.add(mem.node_id)
            else:
                self._suspects.discard(mem.node_id)
            self._graves.pop(mem.node_id, None)
            if state in ("dead", "left"):
                self._graves[mem.node_id] = None
        mem.state, mem.incarnation = state, inc

    def _broadcast(self, infos: list[MemberInfo], exclude: bytes | None) -> list[Outgoing]:
        if not infos:
            return []
        frame = m.Membership(tuple(infos))
        return [(p, frame) for p in self.connected() if p != exclude]

    # -- time ---------------------------------------------------------------------

    def tick(self, now: float) -> list[Outgoing]:
        cfg = self.config
        changed: list[MemberInfo] = []
        out: list[Outgoing] = []
        # Linked members every tick (pings, silence); the rest, whose timeouts
        # are seconds long, once per _SCAN_S: all of them while unlinked members
        # age out (probe_unlinked), else only the suspects (O(links + suspects)).
        rows = [(p, self._members[p]) for p in self._linked if p in self._members]
        if now - self._last_scan >= _SCAN_S:
            self._last_scan = now
            rest = self._members if self.probe_unlinked else self._suspects
            rows += [(p, self._members[p]) for p in rest
                     if p not in self._linked and p in self._members]
        for p, mem in rows:
            silent = mem.last_seen is None or now - mem.last_seen > cfg.suspect_after
            if mem.connected and mem.state == "alive" and silent:
                self._set(mem, "suspect", mem.incarnation, now)
                self.counters["suspected"] += 1
                changed.append(mem.info())
            elif (self.probe_unlinked and mem.state == "alive" and not mem.connected
                    and mem.last_seen is None and now - mem.state_since > cfg.unconfirmed_after):
                self._set(mem, "suspect", mem.incarnation, now)
                self.counters["unconfirmed"] += 1
                changed.append(mem.info())
            elif mem.state == "suspect" and now - mem.state_since > cfg.dead_after:
                self._set(mem, "dead", mem.incarnation, now)
                self.counters["declared_dead"] += 1
                changed.append(mem.info())
            # Any frame proves life, so ping only a peer that has been quiet for
            # a ping interval; a slow ping keeps the rtt estimate fresh.
            quiet = mem.last_seen is None or now - mem.last_seen >= cfg.ping_interval
            due = now - mem.last_ping >= (cfg.ping_interval if quiet else cfg.rtt_ping_interval)
            if mem.connected and mem.state in ("alive", "suspect") and due:
                mem.last_ping = now
                self._nonce += 1
                out.append((p, m.Ping(self._nonce, now)))
        if now - self._last_gossip >= cfg.gossip_interval:
            self._last_gossip = now
            table = self.table(now)
            out += [(p, table) for p in self.connected()]
        return out + self._broadcast(changed, exclude=None)

    def leave(self, now: float) -> list[Outgoing]:
        self._set(self.me, "left", self.me.incarnation, now)
        frame = m.Leave(self.me.node_id, self.me.incarnation)
        return [(p, frame) for p in self.connected()]
