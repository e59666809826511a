"""The mesh's own bounds (issue 11): a member that only gossip told of, at an
address nobody answers, is dialed a few times and then backed off, not once
every few seconds for as long as the member table holds it; and a link whose
peer stops reading is closed when its queue is full, not buffered without end."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "swarm"))
from swarmkit import hello_of, node_id

from seedfl.core.store import UpdateStore
from seedfl.net.mesh import _CANDIDATE_TRIES, LINK_QUEUE_FRAMES, Mesh
from seedfl.swarm import messages as m
from seedfl.swarm.clock import MonotonicClock
from seedfl.swarm.peer import SwarmPeer

GHOST = node_id(77)


def test_an_unreachable_gossip_member_is_tried_a_few_times_then_left_alone() -> None:
    async def main() -> tuple[int, int]:
        peer = SwarmPeer(hello_of(1), UpdateStore(), lambda _b: None, MonotonicClock())
        peer.membership._merge(m.MemberInfo(GHOST, "ghost", "127.0.0.1:1", "alive", 0),
                                 peer.clock.now(), [])
        mesh = Mesh(peer)
        attempts: list[float] = []

        async def refused(address: str) -> bool:
            attempts.append(asyncio.get_running_loop().time())
            return False

        mesh._session = refused  # type: ignore[method-assign]
        runner = asyncio.create_task(mesh.run())
        loop = asyncio.get_running_loop()
        began = loop.time()
        while len(attempts) < _CANDIDATE_TRIES:
            assert loop.time() - began < 10, attempts
            await asyncio.sleep(0.05)
        first_round = len(attempts)
        # Many ticks later (a tick is a fraction of a second): no new round yet.
        await asyncio.sleep(3.0)
        later = len(attempts)
        mesh._closing = True
        runner.cancel()
        await mesh.close()
        return first_round, later

    first_round, later = asyncio.run(main())
    assert first_round == _CANDIDATE_TRIES
    assert later == first_round


def test_a_link_whose_peer_stops_reading_is_closed_when_its_queue_is_full() -> None:
    async def main() -> tuple[int, bool, int, int]:
        peer = SwarmPeer(hello_of(1), UpdateStore(), lambda _b: None, MonotonicClock())
        mesh = Mesh(peer)
        link = mesh._open(hello_of(2).node_id, hello_of(2))  # no writer drains it
        ping = m.Ping(1, 0.0)
        for _ in range(LINK_QUEUE_FRAMES + 10):
            mesh.route([(link.peer_id, ping)])
        return link.queue.qsize(), link.closed, mesh.overflowed_links, mesh.dropped_frames

    queued, closed, overflowed, dropped = asyncio.run(main())
    assert closed and overflowed == 1
    assert queued == LINK_QUEUE_FRAMES + 1  # full, plus the close marker
    # connect's own frames took 2 places; the ping that found it full closed
    # it, and the rest found no link and were counted as dropped.
    assert dropped == (LINK_QUEUE_FRAMES + 10) - (LINK_QUEUE_FRAMES - 2) - 1
