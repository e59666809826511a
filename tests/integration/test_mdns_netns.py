"""Three hosts in network namespaces find each other by mDNS alone and train together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from netns import Lan, netns_unavailable
from nodekit import TINY_CONFIG, env, wait_for, write_data

pytestmark = [pytest.mark.timeout(400), pytest.mark.netns]

_REASON = netns_unavailable()
STEPS = 10


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_nodes_discover_each_other_by_mdns(tmp_path: Path) -> None:
    lan = Lan(3)
    procs: list[subprocess.Popen[bytes]] = []
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    try:
        for i, addr in enumerate(lan.addresses):
            state = tmp_path / f"h{i + 1}"
            state.mkdir()
            data = write_data(tmp_path / f"d{i}.jsonl", 60, i)
            cmd = lan.wrap(i, [sys.executable, "-m", "seedfl", "run", "--config", str(cfg),
                               "--data", str(data), "--state-dir", str(state),
                               "--interface", addr, "--listen", f"{addr}:0",
                               "--name", f"h{i + 1}", "--max-steps", str(STEPS), "--quiet"])
            log = open(state / "node.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env()))

        def status(i: int) -> dict | None:
            path = tmp_path / f"h{i + 1}" / "node.addr"
            if not path.exists() or not path.read_text().strip():
                return None
            res = subprocess.run(lan.wrap(i, [sys.executable, "-m", "seedfl", "status",
                                              path.read_text().strip(), "--json"]),
                                 capture_output=True, text=True, env=env(), timeout=60)
            return json.loads(res.stdout) if res.returncode == 0 else None

        def converged() -> list[dict] | None:
            ss = [status(i) for i in range(3)]
            if any(s is None for s in ss):
                return None
            if any(s["applied_total"] != 3 * STEPS for s in ss):
                return None
            return ss

        ss = wait_for(converged, 240, "three mDNS-discovered nodes to exchange updates",
                      every=2.0)
        for s in ss:
            alive = {p["name"] for p in s["peers"] if p["state"] == "alive"}
            assert len(alive) == 2, s["peers"]
            assert s["updates_received"] >= 2 * STEPS
        logs = "".join((tmp_path / f"h{i + 1}" / "node.log").read_text() for i in range(3))
        assert "mDNS unavailable" not in logs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        lan.close()
