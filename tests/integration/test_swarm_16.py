"""Sixteen real `seedfl run` processes, default settings, one seed address (issue 13).

Every node is given only the first node's address, the hardest case for a
bounded view: all fifteen dial the same seed at once. The swarm must sort
itself out so that no node ever shows more open links than its active-view
bound (8 by default, read from each node's status), every node keeps at least
one link, and all sixteen end with the same version vector holding every
node's updates, which travelled multi-hop (a node is linked to at most 8 of
the 15 others).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data

pytestmark = pytest.mark.timeout(600)

N, STEPS = 16, 6


def test_sixteen_nodes_stay_within_their_views_and_converge(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    nodes: list[NodeProc] = []
    most_links = 0

    def poll() -> list[dict[str, Any]] | None:
        nonlocal most_links
        statuses = [n.status() for n in nodes]
        for s in statuses:
            linked = sum(1 for p in s["peers"] if p["connected"])
            assert s["active_view"] == 8, s["active_view"]
            assert s["links"] <= s["active_view"], (s["name"], s["links"])
            assert linked <= s["active_view"], (s["name"], linked)
            most_links = max(most_links, s["links"])
        if any(s["own_seq"] < STEPS for s in statuses):
            return None
        if len({s["vv_digest"] for s in statuses}) != 1:
            return None
        if any(s["applied_total"] != N * STEPS for s in statuses):
            return None
        # On 2 cores 16 busy processes can miss a ping or a dial: a transient
        # suspicion that the member refutes. Wait for everyone to see all alive.
        if any(sum(1 for p in s["peers"] if p["state"] == "alive") != N - 1 for s in statuses):
            return None
        return statuses

    try:
        extra = ["--max-steps", str(STEPS)]
        first = NodeProc(tmp_path / "n1", cfg, write_data(tmp_path / "d1.jsonl", 40, 1), [],
                         extra=extra)
        nodes.append(first)
        seed = first.address()
        for i in range(2, N + 1):
            nodes.append(NodeProc(tmp_path / f"n{i}", cfg,
                                  write_data(tmp_path / f"d{i}.jsonl", 40, i), [seed],
                                  extra=extra))
        for n in nodes:
            n.address(deadline_s=240)
        statuses = wait_for(poll, 420, "sixteen equal version vectors", every=1.0)
        assert most_links > 1  # links were made beyond the seed
        for s in statuses:
            assert len(s["version_vector"]) == N
            assert all(v == STEPS for v in s["version_vector"].values())
            assert 1 <= s["links"] <= 8
            assert sum(1 for p in s["peers"] if p["state"] == "alive") == N - 1
            assert sum(s["updates_rejected"].values()) == 0, s["updates_rejected"]
        # With 15 others and at most 8 links, somebody's updates came multi-hop.
        assert any(s["links"] < N - 1 for s in statuses)
    finally:
        stop_all(nodes)
