"""A node that joins after 500 updates catches up by replay, or by snapshot, and agrees.

Two trainers make 500 updates between them and stop; then two data-less
joiners start, one with ``--catch-up replay`` and one with ``--catch-up
snapshot``. Each must say (in its status metrics) which way it caught up, and
end at the trainers' version vector with a replica divergence (relative
difference of a fixed random projection of θ) of at most 1e-6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data

pytestmark = pytest.mark.timeout(300)

STEPS = 250  # per trainer: 500 updates in all


def test_late_joiners_catch_up_by_replay_and_by_snapshot(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    nodes: list[NodeProc] = []
    try:
        a = NodeProc(tmp_path / "a", cfg, write_data(tmp_path / "a.jsonl", 80, 1), [],
                     extra=["--max-steps", str(STEPS)])
        nodes.append(a)
        seed = a.address()
        b = NodeProc(tmp_path / "b", cfg, write_data(tmp_path / "b.jsonl", 80, 2), [seed],
                     extra=["--max-steps", str(STEPS)])
        nodes.append(b)

        def trained() -> bool:
            ss = [a.status(), b.status()]
            return all(s["applied_total"] == 2 * STEPS for s in ss)

        wait_for(trained, 120, "500 updates on both trainers", every=0.5)
        joiners = {
            mode: NodeProc(tmp_path / f"j-{mode}", cfg, None, [seed],
                           extra=["--catch-up", mode])
            for mode in ("replay", "snapshot")
        }
        nodes.extend(joiners.values())
        reference = a.status()

        def caught_up(j: NodeProc) -> dict | None:
            s = j.status()
            if s["catchup_state"] != "done" or s["applied_vv_digest"] != \
                    reference["applied_vv_digest"] or s["divergence"] is None:
                return None
            return s

        for mode, j in joiners.items():
            s = wait_for(lambda j=j: caught_up(j), 90, f"the {mode} joiner to catch up")
            assert s["version_vector"] == reference["version_vector"]
            assert s["applied_total"] == 2 * STEPS
            assert s["divergence"] <= 1e-6, s["divergence"]
            assert s["state"] == "relaying"
            m = s["metrics"]
            assert m[f"catchup_by_{mode}"] == 1.0, m
            assert m["catchup_missing_updates"] == 2 * STEPS
            if mode == "snapshot":
                assert m["catchup_snapshot_bytes"] > 0
                print(f"snapshot: {m['catchup_snapshot_bytes'] / 1e6:.2f} MB at "
                      f"{m['catchup_snapshot_mb_per_s']:.1f} MB/s, "
                      f"catch-up {m['catchup_seconds']:.2f}s")
            else:
                assert m.get("catchup_snapshot_bytes", 0.0) == 0.0
                assert m["catchup_replay_params_per_s"] > 0
        # The trainers see the joiners' projections agree with theirs too.
        # A joiner announces its applied state once it has stayed put for a
        # vector_interval (GossipConfig.vector_max_interval), so poll for it.
        ra = wait_for(lambda: (r := a.status())["divergence"] is not None and r, 30,
                      "the trainer to measure divergence against the joiners")
        assert ra["divergence"] <= 1e-6
    finally:
        stop_all(nodes)
