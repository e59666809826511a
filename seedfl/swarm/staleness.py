"""``swarm.max_staleness``: how far this node may run ahead of its live peers.

DESIGN §6: no barrier ever, but an optional bound. With ``max_staleness = N``
a node takes no own step while

    own_seq − floor ≥ N,   floor = min over live peers p of vector[p],

where ``vector`` is this node's store (the updates it holds of p: p's own
count as far as we know) and a peer is *live* when membership says ``alive``
and *heard from* when at least one of its updates reached us. A peer that
trains nothing (a relay, a node without data) or has not made its first
update yet is not waited for: nothing it does would ever lift the floor.
A peer that suspects, dies or leaves stops counting at once. Once a live peer
stops stepping for good (``--max-steps`` reached) the others stop N updates
after it: that is the bound doing what it says.

The node computes ``floor`` on the event loop after anything that can move it
(an update arrived, membership changed) and hands it to the trainer, which
checks the bound right before each own step (``TrainerThread.floor``).

This module knows the membership table and a version vector, nothing of
threads, sockets or tensors.
"""

from __future__ import annotations

from collections.abc import Iterable

from seedfl.core.version_vector import VersionVector
from seedfl.swarm.membership import Member


def staleness_floor(own_id: bytes, vector: VersionVector,
                    members: Iterable[Member]) -> int | None:
    """Own-update count of the slowest live peer heard from; None when none is."""
    counts = [vector.get(mem.node_id) for mem in members
              if mem.state == "alive" and mem.node_id != own_id and vector.get(mem.node_id) > 0]
    return min(counts) if counts else None


def must_wait(own_seq: int, floor: int | None, max_staleness: int) -> bool:
    """True when a node with ``own_seq`` updates may not make another one."""
    return max_staleness > 0 and floor is not None and own_seq - floor >= max_staleness
