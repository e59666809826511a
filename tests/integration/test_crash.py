"""kill -9 at random moments, and a log that lost its tail: nothing logged is lost.

``test_sigkill_at_random_moments``: one node trains with a checkpoint every
two updates (so many kills land inside a checkpoint write) and is killed with
SIGKILL 20 times, at a random moment after it starts training. After every
kill the state directory must recover (in this process, on a copy): the
newest checkpoint loads and is covered by the log, the log's vector never
goes backwards, and the recovered weights are the log's. After every restart
the node itself reports a version vector that covers everything logged.

``test_torn_own_tail_is_learned_back_from_a_peer``: a power cut can lose the
last records of a log. The node must learn its own updates back from its
peer before stepping again, or it would reuse seqs with other codes and the
replicas would disagree at equal version vectors.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nodekit import TINY_CONFIG, NodeProc, env, stop_all, wait_for, write_data

from seedfl.core.config import parse_config
from seedfl.core.log import UpdateLog
from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import load_latest
from seedfl.training.engine import Engine
from seedfl.training.model import load_swarm_model
from seedfl.training.statedir import StateDir, recover
from seedfl.training.task import Task

pytestmark = pytest.mark.timeout(400)

KILLS = 20

# Twenty interpreter start-ups would cost more than the test itself on a small
# machine, so a warm parent imports everything and loads the model once, then
# forks one `seedfl run` child per line on stdin (printing its pid) and reaps
# it when it dies. Each child is a fresh process running the real CLI entry
# point from the state directory; that is what gets SIGKILLed.
_ZYGOTE = """
import os, signal, sys
import seedfl.cli
from seedfl.core.config import load_config
from seedfl.training.model import load_model, load_swarm_model
args = sys.argv[1:]
load_swarm_model(load_config(args[args.index('--config') + 1]))
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(line.strip(), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            code = seedfl.cli.main(args)
        finally:
            os._exit(code)
    print(pid, flush=True)
"""


class _Zygote:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, "run", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env())

    def spawn(self, logfile: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{logfile}\n".encode())
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class _Alive:
    """The bit of Popen that NodeProc.address() asks: is it still running?"""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        return 1 if _gone(self.pid) else None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _log_vector(log_dir: Path) -> VersionVector:
    counts: dict[bytes, int] = {}
    with UpdateLog(log_dir, fsync="never") as log:
        for batch in log.replay(None):
            assert batch.first_seq <= counts.get(batch.origin, 0), "gap in the log"
            counts[batch.origin] = max(counts.get(batch.origin, 0), batch.end_seq)
    return VersionVector(counts)


class _Recoverer:
    """Recovers a copy of a state directory in this process, as `seedfl run` would."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.cfg = parse_config(TINY_CONFIG)
        self.bundle = load_swarm_model(self.cfg)
        self.theta0 = self.bundle.trainable_state()
        self.task = Task.from_config(self.cfg.task, self.bundle.tokenizer)
        self.mid_write = 0  # kills that left a half-written checkpoint behind

    def check(self, state: Path, scratch: Path) -> VersionVector:
        if scratch.exists():
            shutil.rmtree(scratch)
        shutil.copytree(state, scratch, ignore=shutil.ignore_patterns("node.log"))
        log_vv = _log_vector(scratch / "log")
        ckpt = load_latest(scratch / "checkpoints")
        if ckpt is not None:
            assert not ckpt.skipped, ckpt.skipped  # rename is atomic: never a torn file
            assert log_vv.dominates(ckpt.vv), (ckpt.vv, log_vv)
        self.mid_write += bool(list((scratch / "checkpoints").glob(".ckpt-*.tmp")))
        self.bundle.load_trainable(self.theta0)
        sd = StateDir(scratch)
        node_id, _ = sd.open(self.cfg)
        engine = Engine(self.cfg, self.bundle, self.task, [], node_id)
        log = sd.open_log()
        try:
            report, _logged = recover(engine, sd, log)
        finally:
            log.close()
        assert engine.applied_vector() == log_vv
        assert report.log_updates >= log_vv.total()
        return log_vv


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    data = write_data(tmp_path / "d.jsonl", 80, 7)
    state = tmp_path / "node"
    state.mkdir()
    args = ["--config", str(cfg), "--data", str(data), "--state-dir", str(state),
            "--listen", "127.0.0.1:0", "--no-mdns", "--quiet", "--name", "crashy",
            "--checkpoint-every", "2"]
    rng = random.Random(20240607)
    recoverer = _Recoverer()
    durable = VersionVector()
    t0 = time.monotonic()
    zygote = _Zygote(args)
    try:
        for i in range(KILLS):
            (state / "node.addr").unlink(missing_ok=True)
            pid = zygote.spawn(tmp_path / "node.log")
            node = NodeProc.__new__(NodeProc)  # only for address() and status()
            node.state, node.proc = state, _Alive(pid)
            node.address()
            s = node.status()
            vv = VersionVector.from_dict(s["version_vector"])
            # What the node resumed with covers everything the last kill left logged.
            assert vv.dominates(durable), (i, s["version_vector"], durable.to_dict())
            assert s["own_seq"] >= durable.total()
            time.sleep(rng.uniform(0.0, 1.2))  # the random moment, not a synchronization
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: _gone(pid), 10, "the killed node to be gone", every=0.02)
            now = recoverer.check(state, tmp_path / "scratch")
            assert now.dominates(durable), (i, now.to_dict(), durable.to_dict())
            durable = now
    finally:
        zygote.close()
    assert durable.total() > KILLS, "the node barely trained between kills"
    print(f"{KILLS} kills in {time.monotonic() - t0:.1f}s, {durable.total()} updates logged, "
          f"{recoverer.mid_write} kills inside a checkpoint write")


def test_torn_own_tail_is_learned_back_from_a_peer(tmp_path: Path) -> None:
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    nodes: list[NodeProc] = []
    try:
        a = NodeProc(tmp_path / "a", cfg, write_data(tmp_path / "a.jsonl", 80, 1), [],
                     extra=["--max-steps", "40", "--step-interval", "0.02"])
        nodes.append(a)
        b_state, b_data = tmp_path / "b", write_data(tmp_path / "b.jsonl", 80, 2)
        b = NodeProc(b_state, cfg, b_data, [a.address()], extra=["--step-interval", "0.02"])
        nodes.append(b)
        b_id = wait_for(lambda: b.status()["own_seq"] >= 30 and b.status()["node_id"], 60,
                        "b to make 30 updates")

        def a_has_b() -> int:
            return int(a.status()["version_vector"].get(b_id, 0) >= 30)

        wait_for(a_has_b, 30, "a to hold b's updates")
        b.proc.send_signal(signal.SIGKILL)
        b.kill()
        before = a.status()["version_vector"][b_id]
        # A power cut: the last records never reached the disk, one of them half.
        seg = sorted((b_state / "log").glob("log-*.seg"))[-1]
        size = seg.stat().st_size
        with open(seg, "r+b") as fh:
            fh.truncate(size - 43 * 8 - 20)
        shutil.copytree(b_state / "log", tmp_path / "log-copy")  # opening a log repairs it
        assert _log_vector(tmp_path / "log-copy").get(bytes.fromhex(b_id)) < before
        b = NodeProc(b_state, cfg, b_data, [a.address()],
                     extra=["--step-interval", "0.02", "--max-steps", str(before + 20)])
        nodes[1] = b

        def agreed() -> dict | None:
            sa, sb = a.status(), b.status()
            if sb["own_seq"] < before + 20 or sa["applied_vv_digest"] != sb["applied_vv_digest"]:
                return None
            return sb if sb["divergence"] is not None else None

        sb = wait_for(agreed, 90, "a and b to agree after b's restart")
        assert "torn tail 0 bytes" not in sb["recovery"], sb["recovery"]
        assert sb["metrics"]["catchup_fetched_updates"] + sb["updates_received"] > 0
        # Had b reused a seq with another code, a and b would hold different θ here.
        assert sb["divergence"] <= 1e-6, sb["divergence"]
        assert sb["version_vector"][b_id] == before + 20
    finally:
        stop_all(nodes)
