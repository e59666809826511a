"""Bounded views: which members a node keeps links to (HyParView-like, DESIGN §7).

A full mesh costs every node N − 1 links; here a node keeps an *active view*
of at most ``active_size`` linked peers and treats every other alive member
it knows of (membership's table) as its *passive view*: candidates to dial
when a link is lost. The rules, each decided here and carried out by the node
(net/mesh.py) or the in-memory network (swarm/transport.py):

- **Dial while short.** With fewer than ``dial_target`` links (counting dials
  in flight), ``to_dial`` names random passive members to dial, never more
  than the shortfall at once. A swarm that fits in the view (alive members ≤
  ``active_size`` + 1) is dialed whole: a LAN of 3 stays a full mesh.
- **Always accept, then trim.** An inbound link is never refused, so a joiner
  whose only address is a busy seed still gets in (HyParView's join); when a
  link brings the view over ``active_size``, a random *other* peer is dropped
  (``to_drop``) and not dialed again for ``cooldown`` seconds, so the two do
  not redial each other at once. The dropped peer, if now short, dials
  another member; since dials stop at ``dial_target`` < ``active_size``, most
  views have room and such a chain of drops ends within a hop or two.
- **Failure repair.** A lost link is a shortfall like any other: the next
  ``to_dial`` replaces it from the passive view.
- **Rewiring.** A drop can cut the only link between two parts of a young
  swarm whose members have not yet heard of each other. So a dropped peer is
  handed our member table with the Drop (it and its neighbours then know both
  parts), and every ``rewire_interval`` (±50%, random) a node that is not
  short dials one random member anyway; the overflow this causes drops a
  random link. The overlay keeps re-randomising, which joins such parts again
  within a few intervals, at the cost of about two links (handshake, member
  table) per node per interval.

Degrees stay between ``dial_target`` and ``active_size`` whatever N (the
random graph this makes, every node with ≥ dial_target links to uniformly
chosen others, is connected with high probability for dial_target ≥ 3), so a
node's connections and the per-update cost of pushing along them do not grow
with the swarm. Updates then travel multi-hop: Gossip relays pushed updates
when the view is partial (``partial``), and the vector exchange repairs what
pushes missed.

Defaults: active_size 8 ≈ log₂(1000) − 2 and dial_target 4. A larger view is
fewer hops (lower latency) and more duplicates per update; a smaller one is
cheaper and more fragile under churn. ``active_size`` 0 turns the bound off
(dial every member: the old full mesh).

This module is pure: members, links and time come in, names of peers go out.
It knows nothing of sockets, frames or updates.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

__all__ = ["ViewConfig", "Views"]


@dataclass(frozen=True)
class ViewConfig:
    """active_size: most links a node keeps (0: unbounded, a full mesh).
    dial_target: links below which a node dials more (≤ active_size).
    cooldown: seconds a peer we dropped is not dialed again by us.
    rewire_interval: mean seconds between dials of one random member by a
        node that is not short (0: never). Shorter heals a split overlay
        sooner and costs more links and member tables per node."""

    active_size: int = 8
    dial_target: int = 4
    cooldown: float = 30.0
    rewire_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.active_size < 0 or self.dial_target < 1:
            raise ValueError("active_size must be ≥ 0 and dial_target ≥ 1")
        if self.active_size and self.dial_target > self.active_size:
            raise ValueError("dial_target must not exceed active_size")


class Views:
    def __init__(self, config: ViewConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.active: dict[bytes, float] = {}  # linked peer → when its link opened
        self._cooling: dict[bytes, float] = {}  # dropped peer → not dialed before
        self._rewire_at: float | None = None
        self.drops = 0
        self.rewires = 0

    @property
    def bounded(self) -> bool:
        return self.config.active_size > 0

    def partial(self, alive: int) -> bool:
        """True when some of the ``alive`` other members are not linked to us, so
        pushes must be relayed for updates to reach everyone."""
        return alive > len(self.active)

    def on_connect(self, peer_id: bytes, now: float) -> None:
        self.active[peer_id] = now
        self._cooling.pop(peer_id, None)

    def on_disconnect(self, peer_id: bytes) -> None:
        self.active.pop(peer_id, None)

    def on_dropped(self, peer_id: bytes, now: float) -> None:
        """``peer_id`` dropped us from its view: its view is full, so do not dial
        it again for ``cooldown`` (the link itself closes from its side)."""
        self._cooling[peer_id] = now + self.config.cooldown

    def to_drop(self, now: float) -> list[bytes]:
        """Peers to disconnect so that the view is back within ``active_size``:
        random ones, never the newest link (the one that made it overflow)."""
        size = self.config.active_size
        if not size or len(self.active) <= size:
            return []
        newest = max(self.active, key=self.active.__getitem__)
        others = sorted(p for p in self.active if p != newest)
        out = self.rng.sample(others, len(self.active) - size)
        for peer_id in out:
            del self.active[peer_id]
            self._cooling[peer_id] = now + self.config.cooldown
        self.drops += len(out)
        return out

    def short(self, alive: int, dialing: int, now: float | None = None) -> bool:
        """Whether ``to_dial`` could name anyone: the view is below its target
        (or below the whole swarm, when that fits in it)."""
        size = self.config.active_size
        if not size or alive <= size:
            return len(self.active) + dialing < alive
        return len(self.active) + dialing < self.config.dial_target or self._rewire_due(now)

    def _rewire_due(self, now: float | None) -> bool:
        every = self.config.rewire_interval
        if not every or now is None:
            return False
        if self._rewire_at is None:
            self._rewire_at = now + every * (0.5 + self.rng.random())
        return now >= self._rewire_at

    def wants_links(self, dialing: int = 0) -> bool:
        """Whether a new outbound link would be welcome now (for persistent dials:
        static peers and discovered addresses)."""
        return not self.bounded or len(self.active) + dialing < self.config.dial_target

    def to_dial(self, candidates: Iterable[bytes], alive: int, dialing: Collection[bytes],
                now: float) -> list[bytes]:
        """Which of ``candidates`` (alive members not linked to us) to dial now.

        ``alive`` counts alive members other than us; ``dialing`` are dials in
        flight. Everything when the swarm fits in the view (or the view is
        unbounded), else a random sample of the shortfall below dial_target.
        """
        self._cooling = {p: t for p, t in self._cooling.items() if t > now}
        ready = sorted(p for p in candidates
                       if p not in self.active and p not in dialing and p not in self._cooling)
        size = self.config.active_size
        if not size or alive <= size:
            return ready
        short = self.config.dial_target - len(self.active) - len(dialing)
        if short <= 0 and not dialing and ready and self._rewire_due(now):
            every = self.config.rewire_interval
            self._rewire_at = now + every * (0.5 + self.rng.random())
            self.rewires += 1
            return [self.rng.choice(ready)]
        if short <= 0 or not ready:
            return []
        return self.rng.sample(ready, min(short, len(ready)))
