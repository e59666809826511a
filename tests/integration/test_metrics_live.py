"""A real node with ``--metrics-port 0``: metrics agree with ``seedfl status``.

One solo node on the tiny model makes a fixed number of steps and then keeps
running; once it is idle its own_seq cannot move, so the Prometheus value and
the Status value must be equal. Stopping it leaves a history that ``seedfl
eval`` extends and ``seedfl plot`` draws.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, seedfl, wait_for, write_data

from seedfl.cli.status import format_status
from seedfl.core.status import NodeStatus

pytestmark = pytest.mark.timeout(300)

STEPS = 6


def scrape(addr: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m[1]: float(m[2])
            for m in re.finditer(r"^(seedfl_\w+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def test_metrics_match_status_and_history_plots(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    data = write_data(tmp_path / "train.jsonl", 100, seed=3)
    state = tmp_path / "solo"
    node = NodeProc(state, cfg, data, [], extra=["--metrics-port", "0",
                                                 "--max-steps", str(STEPS)])
    try:
        address = node.address()
        maddr = (state / "metrics.addr").read_text().strip()  # written before node.addr
        assert maddr.startswith("127.0.0.1:") and not maddr.endswith(":0")
        with urllib.request.urlopen(f"http://{maddr}/healthz", timeout=5) as r:
            assert r.read() == b"ok\n"
        wait_for(lambda: scrape(maddr).get("seedfl_own_seq") == STEPS, 120,
                 "the node to finish its steps")
        res = seedfl("status", address, "--json", timeout=60)
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        metrics = scrape(maddr)
        assert status["own_seq"] == STEPS
        assert metrics["seedfl_own_seq"] == status["own_seq"]
        assert metrics["seedfl_applied_total"] == status["applied_total"] == STEPS
        assert float(metrics["seedfl_loss_ema"]) == pytest.approx(status["loss_ema"])
        assert metrics['seedfl_peers{state="alive"}'] == 0
        human = format_status(NodeStatus.from_dict(status))  # what `seedfl status` prints
        assert f"own seq {STEPS}  applied {STEPS}" in human
        assert "catch-up  none" in human and "coalescing 1.00x" in human
        node.terminate(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, node.log()
    finally:
        node.kill()

    rows = [json.loads(line) for line in (state / "history.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["kind"] == "train"  # the row written on stop
    assert rows[-1]["own_seq"] == STEPS and rows[-1]["applied_total"] == STEPS
    assert rows[-1]["loss_ema"] == pytest.approx(status["loss_ema"])

    val = write_data(tmp_path / "val.jsonl", 16, seed=4)
    res = seedfl("eval", "--state-dir", str(state), "--data", str(val), "--json")
    assert res.returncode == 0, res.stderr
    last = json.loads((state / "history.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "eval" and last["applied_total"] == STEPS
    assert last["accuracy"] == json.loads(res.stdout.strip().splitlines()[-1])["accuracy"]

    res = seedfl("plot", "--state-dir", str(state), "--out", str(tmp_path / "c.png"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
