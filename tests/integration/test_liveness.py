"""A crashed node is shown dead after the configured timeout; one that leaves is shown left.

Three nodes with short membership timeouts (suspect after 1 s, dead 2 s
later) train a few steps. One is killed with SIGKILL: the others must show it
``dead`` within those timeouts plus slack (not ``left``: it said nothing). One
leaves with SIGTERM: the last must show it ``left`` and keep every update it
made, in the version vector and, after a clean stop, in its log on disk.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data

from seedfl.core.log import UpdateLog

pytestmark = pytest.mark.timeout(300)

STEPS = 15
SUSPECT, DEAD = 1.0, 2.0


def _state_of(node: NodeProc, name: str) -> str | None:
    for p in node.status()["peers"]:
        if p["name"] == name:
            return str(p["state"])
    return None


def test_crashed_is_dead_and_leaver_is_left_with_its_updates_kept(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    flags = ["--max-steps", str(STEPS), "--suspect-after", str(SUSPECT),
             "--dead-after", str(DEAD)]
    nodes: list[NodeProc] = []
    try:
        first = NodeProc(tmp_path / "n1", cfg, write_data(tmp_path / "d1.jsonl", 60, 1), [],
                         extra=flags)
        nodes.append(first)
        seed = first.address()
        for i in (2, 3):
            nodes.append(NodeProc(tmp_path / f"n{i}", cfg,
                                  write_data(tmp_path / f"d{i}.jsonl", 60, i), [seed],
                                  extra=flags))
        n1, n2, n3 = nodes

        def all_applied() -> bool:
            return all(n.status()["applied_total"] == 3 * STEPS for n in nodes)

        wait_for(all_applied, 120, "every node to apply every update")
        ids = {n.state.name: n.status()["node_id"] for n in nodes}

        # Crash: no goodbye, so liveness must find out.
        t0 = time.monotonic()
        n3.proc.send_signal(signal.SIGKILL)
        n3.kill()
        wait_for(lambda: _state_of(n1, "n3") == "dead" and _state_of(n2, "n3") == "dead",
                 SUSPECT + DEAD + 8, "n3 shown dead on n1 and n2", every=0.1)
        took = time.monotonic() - t0
        assert took >= DEAD, f"declared dead after {took:.1f}s, before its timeout"
        print(f"crash detected as dead after {took:.1f}s")

        # Leave: announced, so shown left at once, and its updates stay.
        n2.terminate()
        assert n2.wait(timeout=15) == 0, n2.log()
        wait_for(lambda: _state_of(n1, "n2") == "left", 10, "n2 shown left on n1", every=0.1)
        vv = n1.status()["version_vector"]
        assert vv[ids["n2"]] == STEPS and vv[ids["n3"]] == STEPS, vv
        n1.terminate()
        assert n1.wait(timeout=15) == 0, n1.log()
        counts: dict[str, int] = {}
        with UpdateLog(tmp_path / "n1" / "log", fsync="never") as log:
            for batch in log.replay(None):
                key = batch.origin.hex()
                counts[key] = max(counts.get(key, 0), batch.end_seq)
        assert counts == {ids["n1"]: STEPS, ids["n2"]: STEPS, ids["n3"]: STEPS}, counts
    finally:
        stop_all(nodes)
