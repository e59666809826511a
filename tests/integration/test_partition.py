"""A pulled cable: the swarm trains on both sides and converges after reconnection.

Three hosts in network namespaces train with short membership timeouts. Host
3's link goes down for CUT_S seconds (several times its dead timeout, so both
sides declare the other dead and drop their links), all keep training, then
the link comes back. Within RECONVERGE_S of the later of the reconnection and
the last own step, every version vector must be equal (each origin exactly
its step count: nothing lost, nothing counted twice) and the replicas must
agree within 1e-6.

Status is read by one small poller process per namespace that writes the
node's status as JSON into its state directory.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from netns import Lan, netns_unavailable
from nodekit import TINY_CONFIG, env, wait_for, write_data

pytestmark = [pytest.mark.timeout(400), pytest.mark.netns]

_REASON = netns_unavailable()
STEPS = 300
CUT_S = 30.0
RECONVERGE_S = 15.0
FLAGS = ["--suspect-after", "1", "--dead-after", "2", "--step-interval", "0.2",
         "--max-steps", str(STEPS), "--no-mdns", "--quiet"]

_POLLER = """
import json, os, sys, time
from seedfl.net.control import fetch_status
addr, out = sys.argv[1], sys.argv[2]
while True:
    try:
        s = fetch_status(addr, timeout=2.0).to_dict()
        s["polled_at"] = time.time()
        with open(out + ".tmp", "w") as fh:
            json.dump(s, fh)
        os.replace(out + ".tmp", out)
    except Exception:
        pass
    time.sleep(0.2)
"""


def _status(state: Path, fresh_after: float) -> dict[str, Any] | None:
    path = state / "status.json"
    try:
        s: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return s if s["polled_at"] >= fresh_after else None


@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_partitioned_node_reconverges(tmp_path: Path) -> None:
    lan = Lan(3)
    procs: list[subprocess.Popen[bytes]] = []
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    states = [tmp_path / f"h{i + 1}" for i in range(3)]
    try:
        addresses: list[str] = []
        for i, ip in enumerate(lan.addresses):
            states[i].mkdir()
            data = write_data(tmp_path / f"d{i}.jsonl", 60, i)
            peers = [a for p in addresses for a in ("--peer", p)]
            cmd = lan.wrap(i, [sys.executable, "-m", "seedfl", "run", "--config", str(cfg),
                               "--data", str(data), "--state-dir", str(states[i]),
                               "--listen", f"{ip}:0", "--name", f"h{i + 1}", *peers, *FLAGS])
            log = open(states[i] / "node.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env()))
            addr_file = states[i] / "node.addr"
            addresses.append(wait_for(lambda f=addr_file: f.exists() and f.read_text().strip(),
                                      90, f"h{i + 1} to listen"))
            procs.append(subprocess.Popen(
                lan.wrap(i, [sys.executable, "-c", _POLLER, addresses[i],
                             str(states[i] / "status.json")]), env=env()))

        def all_alive() -> bool:
            ss = [_status(s, 0) for s in states]
            return all(s is not None and s["own_seq"] >= 5 and
                       sum(p["state"] == "alive" for p in s["peers"]) == 2 for s in ss)

        wait_for(all_alive, 120, "three hosts training together")
        lan.cut(2)
        cut_at = time.time()
        # Both sides go on training and notice the silence.
        wait_for(lambda: (s := _status(states[0], cut_at)) is not None and any(
            p["name"] == "h3" and p["state"] == "dead" for p in s["peers"]), CUT_S,
            "h1 to declare h3 dead")
        before = [_status(s, cut_at) for s in states]
        assert all(b is not None for b in before)

        def both_sides_trained() -> list[dict[str, Any]] | None:
            # The partition lasts at least CUT_S, and until every host stepped during it.
            during = [_status(s, cut_at) for s in states]
            if time.time() - cut_at < CUT_S or any(d is None for d in during):
                return None
            ok = all(d["own_seq"] > b["own_seq"] or d["own_seq"] >= STEPS
                     for b, d in zip(before, during, strict=True))  # type: ignore[index]
            return during if ok else None

        during = wait_for(both_sides_trained, CUT_S + 60, "both sides to train while cut off")
        print("own steps before/during the cut:",
              [(b["own_seq"], d["own_seq"]) for b, d in zip(before, during, strict=True)])
        assert any(d["own_seq"] < STEPS for d in during), "hosts finished before the cut ended"
        lan.restore(2)
        restored = time.time()

        def finished() -> float | None:
            ss = [_status(s, restored) for s in states]
            if any(s is None or s["own_seq"] < STEPS for s in ss):
                return None
            return time.time()

        done = wait_for(finished, 180, "every host to finish its steps")

        def converged() -> list[dict[str, Any]] | None:
            ss = [_status(s, done) for s in states]
            if any(s is None for s in ss):
                return None
            if len({s["applied_vv_digest"] for s in ss}) != 1 or any(
                    s["divergence"] is None for s in ss):
                return None
            return ss

        ss = wait_for(converged, RECONVERGE_S, "equal vectors after the partition")
        took = time.time() - max(restored, done)
        print(f"reconverged {took:.1f}s after reconnection/last step")
        for s in ss:
            assert set(s["version_vector"].values()) == {STEPS}, s["version_vector"]
            assert s["applied_total"] == 3 * STEPS
            assert s["divergence"] <= 1e-6, s["divergence"]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=15)
            if p.poll() is None:
                p.kill()
        lan.close()
