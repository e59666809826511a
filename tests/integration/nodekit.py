"""Builders for tests that run real ``seedfl`` processes on loopback.

Nodes use the built-in random ``seedfl:tiny`` model and a synthetic
classification task (the label is a marker letter in the text), static peers
and no mDNS. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY_CONFIG = """\
[model]
name = "seedfl:tiny"

[task]
type = "classification"
template = "{text} ="
verbalizer = { "0" = "x", "1" = "y" }
max_length = 32

[zo]
eps = 0.01
lr = 0.001
batch_size = 8

[codec]
name = "log8"
"""


def write_data(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for _ in range(n):
            label = rng.randrange(2)
            word = "".join(rng.choice("bcdfghjk") for _ in range(6))
            marker = "q" if label else "z"
            row = {"text": f"{word}{marker}{word[::-1]}", "label": str(label)}
            fh.write(json.dumps(row) + "\n")
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
             SEEDFL_LOG="WARNING")
    return e


def seedfl(*args: str, timeout: float = 120,
           check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seedfl", *args], capture_output=True,
                          text=True, timeout=timeout, env=env(), check=check)


def wait_for(pred: Callable[[], Any], deadline_s: float, what: str, every: float = 0.2) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what} (last: {last!r})")


class NodeProc:
    def __init__(self, state: Path, config: Path, data: Path | None, peers: list[str],
                 extra: list[str] | None = None, name: str | None = None) -> None:
        self.state = state
        cmd = [sys.executable, "-m", "seedfl", "run", "--config", str(config),
               "--state-dir", str(state), "--listen", "127.0.0.1:0", "--no-mdns", "--quiet",
               "--name", name or state.name]
        if data is not None:
            cmd += ["--data", str(data)]
        for p in peers:
            cmd += ["--peer", p]
        cmd += extra or []
        state.mkdir(parents=True, exist_ok=True)
        addr = state / "node.addr"
        if addr.exists():
            addr.unlink()
        self.logfile = open(state / "node.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     env=env())

    def address(self, deadline_s: float = 60) -> str:
        path = self.state / "node.addr"

        def ready() -> str | None:
            assert self.proc.poll() is None, f"node exited early: {self.log()}"
            return path.read_text().strip() if path.exists() and path.read_text().strip() else None

        return str(wait_for(ready, deadline_s, f"{self.state.name} to listen"))

    def status(self) -> dict[str, Any]:
        from seedfl.net.control import fetch_status

        return fetch_status(self.address(), timeout=5.0).to_dict()  # the --json form

    def log(self) -> str:
        return (self.state / "node.log").read_text(errors="replace")[-3000:]

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.logfile.close()


def stop_all(nodes: list[NodeProc]) -> None:
    """SIGTERM every node, give each 10 s to leave, then make sure it is gone."""
    for n in nodes:
        n.terminate()
    for n in nodes:
        with contextlib.suppress(Exception):
            n.wait(timeout=10)
        n.kill()
