"""How a joiner should catch up, decided from numbers alone (DESIGN §7, §8).

``plan_catchup`` chooses the first way to try from the catch-up mode, what is
missing and the measured rates; ``keep_snapshot`` decides, once the snapshot
stream's second chunk has measured the link, whether downloading the rest
beats replaying. ``regenerations`` says how many directions a replay of
``missing`` updates regenerates (in seed-pool mode at most K per drained
group). ``order_peers`` ranks the peers to ask, best first.

This module does no I/O and knows no node: ``node/catchup.py`` measures,
asks, and carries out what it decides. Its tests are plain function calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seedfl.core.version_vector import VersionVector

__all__ = ["PROBE_AFTER_S", "CatchupPlan", "keep_snapshot", "order_peers", "plan_catchup",
           "regenerations"]

Mode = Literal["auto", "replay", "snapshot", "pool"]
Method = Literal["none", "pool", "snapshot", "replay"]

# Replay estimates below this never consider a snapshot: opening the stream and
# writing a checkpoint file cost more than a couple of seconds of replay.
PROBE_AFTER_S = 2.0


@dataclass(frozen=True)
class CatchupPlan:
    """What to try first. ``fallback`` is what runs when the first choice fails
    (the peer has no pool or snapshot for us): always replay, which any peer
    holding the codes can serve."""

    first: Method
    replay_estimate_s: float
    fallback: Method = "replay"


def regenerations(missing: int, pool_size: int, drain_updates: int) -> int:
    """Directions to regenerate to replay ``missing`` updates.

    Without a pool every update is one regeneration. With a pool of K seeds a
    drain of ``drain_updates`` updates coalesces into at most K regenerations.
    """
    if not pool_size:
        return missing
    groups = -(-missing // max(1, drain_updates))
    return min(missing, pool_size * groups)


def plan_catchup(mode: Mode, missing: int, *, pool_size: int, pool_possible: bool,
                 regens: int, n_params: int, replay_params_per_s: float) -> CatchupPlan:
    """The first way to try.

    - nothing missing: nothing to do;
    - ``pool`` (asked, or ``auto`` with at least K missing) when a pool join is
      possible: K regenerations beat replaying more than K updates;
    - ``snapshot`` when asked, or under ``auto`` when replay looks slower than
      ``PROBE_AFTER_S`` (whether the download is kept is ``keep_snapshot``'s call);
    - else replay.
    """
    replay_s = regens * n_params / max(replay_params_per_s, 1e-9)
    if missing <= 0:
        return CatchupPlan("none", 0.0)
    if pool_possible and (mode == "pool" or (mode == "auto" and missing >= pool_size > 0)):
        return CatchupPlan("pool", replay_s)
    if mode == "snapshot" or (mode == "auto" and replay_s > PROBE_AFTER_S):
        return CatchupPlan("snapshot", replay_s)
    return CatchupPlan("replay", replay_s)


def keep_snapshot(mode: Mode, snapshot_estimate_s: float, replay_estimate_s: float) -> bool:
    """Whether to download the rest of a snapshot whose link rate is now measured.

    Only ``auto`` drops a download, when it would take at least as long as
    replaying; an explicit ``snapshot`` mode always keeps it.
    """
    return mode != "auto" or snapshot_estimate_s < replay_estimate_s


def order_peers(target: VersionVector,
                peers: list[tuple[bytes, VersionVector]]) -> list[bytes]:
    """Peers to ask for the updates of ``target``, those holding more of it first
    (ties broken by node id, so every run asks in the same order)."""
    def held(vv: VersionVector) -> int:
        return sum(min(vv.get(o), n) for o, n in target.items())

    return [pid for pid, _ in sorted(peers, key=lambda p: (-held(p[1]), p[0]))]
