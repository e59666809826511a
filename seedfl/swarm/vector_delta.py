"""Digest anti-entropy: which entries of our version vector a peer is told.

A whole Vector is one entry (≈ 22 bytes) per origin, so sending it to every
peer every ``vector_interval`` costs a node O(N) bytes a second in a swarm of
N origins. Instead, on one link:

- **Whole once.** The first Vector on a link (``on_connect``) is whole; the
  peer starts from it. Nothing on a link is lost or reordered (TCP; a new
  link starts over), so from then on the peer's copy of our vector only needs
  what changed.
- **Then deltas.** A periodic Vector is *partial*: it names only origins whose
  count grew since we last told this peer (``Told.take``), at most
  ``vector_entries`` of them, oldest change first (the rest wait for the next
  one); it skips an origin the peer is known to hold as far as we do (its
  own Vector or its pushes said so: telling it would show it nothing), except
  the peer's own origin, which is how a peer learns that we hold its updates.
  The receiver merges a partial Vector into its copy (pointwise max).
- **Digest.** Every Vector carries the 8-byte digest of our *whole* vector.
  A peer whose own vector has that digest holds exactly what we hold, and
  learns it in 8 bytes instead of N entries (``Gossip.on_vector``).

So a node's vector traffic is at most links × ``vector_entries`` entries per
``vector_interval``, whatever N (plus one whole vector per new link). What it
gives up: a peer's copy of our vector can lag by the entries past the cap,
which only delays a pull it would make of us (pushes carry the updates). On a
transport that drops single frames (the simulator's lossy network, not TCP) a
lost delta is never repeated, so ``vector_refresh_interval`` sends a whole
vector that often.

This module is pure bookkeeping: counts come in, a VersionVector goes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from seedfl.core.version_vector import VersionVector

__all__ = ["Told"]


@dataclass
class Told:
    """What one peer has been told of our vector, and which origins changed since."""

    counts: dict[bytes, int] = field(default_factory=dict)
    # origin → None, in the order their counts grew (a dict is an ordered set)
    untold: dict[bytes, None] = field(default_factory=dict)

    def grew(self, origin: bytes) -> None:
        """Our count of ``origin`` went up."""
        self.untold.setdefault(origin, None)

    def whole(self, have: Mapping[bytes, int]) -> None:
        """A whole vector of ``have`` went to the peer."""
        self.counts = dict(have)
        self.untold.clear()

    def take(self, have: Mapping[bytes, int], known: Mapping[bytes, int], peer_id: bytes,
             cap: int) -> VersionVector:
        """The entries of the next partial Vector, now marked told."""
        chosen: dict[bytes, int] = {}
        if peer_id in self.untold:
            chosen[peer_id] = have.get(peer_id, 0)
        for origin in list(self.untold):
            if len(chosen) >= cap:
                break
            count = have.get(origin, 0)
            if count <= self.counts.get(origin, 0) or known.get(origin, 0) >= count:
                del self.untold[origin]  # nothing to tell, or the peer holds it already
                continue
            chosen[origin] = count
        for origin, count in chosen.items():
            self.untold.pop(origin, None)
            self.counts[origin] = count
        return VersionVector(chosen)
