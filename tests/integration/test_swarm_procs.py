"""Three real `seedfl run` processes on loopback with static peers (issue 3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data

pytestmark = pytest.mark.timeout(400)

STEPS = 20


def _converged(nodes: list[NodeProc]) -> list[dict] | None:
    statuses = [n.status() for n in nodes]
    if any(s["own_seq"] < STEPS for s in statuses):
        return None
    if len({s["applied_vv_digest"] for s in statuses}) != 1:
        return None
    if statuses[0]["applied_total"] != STEPS * len(nodes):
        return None
    if any(s["divergence"] is None for s in statuses):
        return None
    return statuses


def test_three_nodes_train_together_and_leave_cleanly(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    nodes: list[NodeProc] = []
    try:
        first = NodeProc(tmp_path / "n1", cfg, write_data(tmp_path / "d1.jsonl", 80, 1), [],
                         extra=["--max-steps", str(STEPS)])
        nodes.append(first)
        seed = first.address()
        for i in (2, 3):
            nodes.append(NodeProc(tmp_path / f"n{i}", cfg,
                                  write_data(tmp_path / f"d{i}.jsonl", 80, i), [seed],
                                  extra=["--max-steps", str(STEPS)]))
        statuses = wait_for(lambda: _converged(nodes), 240, "equal version vectors", every=1.0)
        for s in statuses:
            assert s["version_vector"] == statuses[0]["version_vector"]
            assert s["divergence"] <= 1e-6, s["divergence"]
            assert s["payload_bytes_out"] >= STEPS  # at least its own updates, 1 byte each
            assert sum(s["updates_rejected"].values()) == 0
        # Nodes 2 and 3 learned of each other through gossip, not flags.
        names = {p["name"] for p in statuses[2]["peers"] if p["state"] == "alive"}
        assert names == {"n1", "n2"}, statuses[2]["peers"]

        leaver = nodes[2]
        t0 = time.monotonic()
        leaver.terminate()
        assert leaver.wait(timeout=10) == 0, leaver.log()
        assert time.monotonic() - t0 < 5.0

        def shown_left() -> bool:
            rows = nodes[0].status()["peers"]
            return any(p["name"] == "n3" and p["state"] == "left" for p in rows)

        wait_for(shown_left, 15, "n3 shown as left")
    finally:
        stop_all(nodes)
