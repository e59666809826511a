"""Wire cost per update in a steady 3-node loopback swarm (DESIGN §12).

Three real ``seedfl run`` processes on loopback (tiny model, static peers,
default batching) each take steps at a fixed rate (the report gives the rate
they reached: on 2 cores three nodes manage about 20-25 steps/s each, and
one example per step is no faster but trips the divergence guard). A window
of 60 s holds two ``vector_max_interval`` periods. Between two Status
snapshots taken in steady state (handshakes done) we divide:
- payload bytes sent by the number of updates sent: the codec's size
  (1 byte for log8/lin8, 1/8 for sign1);
- all Gossip bytes sent (serialized frames plus gRPC/HTTP2 framing, by the
  nodes' own counters) by updates × (N − 1) peers: what one update costs on
  the wire per peer, vectors, pings and membership included.
- the TCP payload the kernel acknowledged on the long-lived connections in
  the same window (``ss -tin``, bench/tcpbytes.py; no root), per update per
  peer: what actually crossed the connection, HTTP/2 housekeeping included.
For contrast it prints what DDP's ring all-reduce moves per step for the demo
model (2 × 4 bytes × parameters). Optionally (``capture=True``, needs tcpdump
and root) the same window is captured on loopback to check the counters
against the bytes TCP carried.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from seedfl.bench import tcpbytes
from seedfl.core.status import NodeStatus

_CONFIG = """\
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
batch_size = 4
[codec]
name = "CODEC"
"""
SMOLLM2_PARAMS = 134_515_008


def _data(path: Path, n: int) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"sample {i} {'q' if i % 2 else 'z'}",
                                 "label": str(i % 2)}) + "\n")
    return path


def _status(addr: str) -> NodeStatus:
    from seedfl.net.control import fetch_status

    return fetch_status(addr, timeout=5.0)


def _wait(pred: Any, deadline: float) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        out = pred()
        if out:
            return out
        time.sleep(0.5)
    raise TimeoutError("the wire benchmark swarm did not reach its state in time")


def bench_wire(quick: bool = False, codec: str = "log8", rate: float = 5.0,
               seconds: float = 60.0, capture: bool = False) -> dict[str, Any]:
    n = 3
    work = Path(tempfile.mkdtemp(prefix="seedfl-wire-"))
    cfg = work / "swarm.toml"
    cfg.write_text(_CONFIG.replace("CODEC", codec))
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SEEDFL_LOG": "WARNING",
           "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    procs: list[subprocess.Popen[bytes]] = []
    addrs: list[str] = []
    seconds = 8.0 if quick else seconds
    try:
        for i in range(n):
            state = work / f"n{i}"
            cmd = [sys.executable, "-m", "seedfl", "run", "--config", str(cfg), "--data",
                   str(_data(work / f"d{i}.jsonl", 64)), "--state-dir", str(state), "--listen",
                   "127.0.0.1:0", "--no-mdns", "--quiet", "--step-interval", str(1.0 / rate)]
            cmd += [arg for a in addrs[:1] for arg in ("--peer", a)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=env))
            addr_file = state / "node.addr"
            addrs.append(_wait(lambda f=addr_file: f.exists() and f.read_text().strip(), 120))
        _wait(lambda: all(sum(p.state == "alive" for p in _status(a).peers) == n - 1
                          for a in addrs), 60)
        time.sleep(2.0)  # settle: initial vectors and catch-up pulls are not steady state
        dump = None
        if capture and shutil.which("tcpdump"):
            ports = " or ".join(f"port {a.rpartition(':')[2]}" for a in addrs)
            dump = subprocess.Popen(["tcpdump", "-i", "lo", "-w", str(work / "cap.pcap"),
                                     "-U", ports], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        node_ports = [int(a.rpartition(":")[2]) for a in addrs]
        before = [_status(a) for a in addrs]
        kernel_before = tcpbytes.snapshot(node_ports)
        time.sleep(seconds)
        kernel_after = tcpbytes.snapshot(node_ports)
        after = [_status(a) for a in addrs]
        if dump is not None:
            time.sleep(0.5)
            dump.terminate()
            dump.wait(10)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    def delta(key: str) -> int:
        return sum(getattr(a, key) - getattr(b, key) for a, b in zip(after, before, strict=True))

    new_updates = sum(a.own_seq - b.own_seq for a, b in zip(after, before, strict=True))
    out: dict[str, Any] = {
        "codec": codec, "nodes": n, "steps_per_s_per_node": rate, "window_s": seconds,
        # What the nodes managed (a step costs two forward passes plus replaying
        # the peers' updates; on a small machine 50/s may be out of reach).
        "achieved_steps_per_s_per_node": new_updates / n / seconds,
        "updates": new_updates,
        "payload_bytes_per_update": delta("payload_bytes_out") / max(1, delta("updates_sent")),
        "gossip_bytes_per_update_per_peer": (
            delta("total_bytes_out") / max(1, new_updates * (n - 1))
        ),
        "duplicates_per_update": delta("updates_duplicate") / max(1, new_updates),
        "ddp_bytes_per_step_smollm2": 2 * 4 * SMOLLM2_PARAMS,
    }
    kernel = tcpbytes.carried(kernel_before, kernel_after)
    # "counted": the nodes' own serialized frames + 14 B/message of estimated
    # framing; "TCP payload": what the kernel acknowledged on the long-lived
    # connections (HTTP/2 WINDOW_UPDATE, PING and SETTINGS frames included).
    out["tcp_payload_bytes_per_update_per_peer"] = (
        kernel["tcp_payload_bytes"] / max(1, new_updates * (n - 1)))
    out["tcp_connections"] = kernel["connections"]
    out["tcp_payload_over_counted"] = kernel["tcp_payload_bytes"] / max(
        1, delta("total_bytes_out"))
    out["ddp_over_seedfl_per_step"] = out["ddp_bytes_per_step_smollm2"] / max(
        1e-9, out["gossip_bytes_per_update_per_peer"])
    if dump is not None:
        out["capture"] = _tcp_payload(work / "cap.pcap", delta("total_bytes_out"))
    shutil.rmtree(work, ignore_errors=True)
    return out


def _tcp_payload(pcap: Path, counted: int) -> dict[str, Any]:
    """TCP payload on the long-lived (gossip) connections vs our own counters.

    The Status calls that open and close the window are short connections to the
    same ports; a connection counts as gossip when its packets span most of the
    capture. The rest of the difference is HTTP/2 housekeeping our counters do
    not see (WINDOW_UPDATE, keepalive PING, SETTINGS) beyond the 14 bytes of
    frame headers they estimate per message.
    """
    res = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-q", "-tt"],
                         capture_output=True, text=True, check=False)
    conns: dict[frozenset[str], list[float]] = {}
    total = 0
    for line in res.stdout.splitlines():
        parts = line.split()
        tail = parts[-1] if parts else ""
        if len(parts) < 5 or not tail.isdigit():
            continue
        t, src, dst, size = float(parts[0]), parts[2], parts[4].rstrip(":"), int(tail)
        span = conns.setdefault(frozenset((src, dst)), [t, t, 0.0])
        span[0], span[1], span[2] = min(span[0], t), max(span[1], t), span[2] + size
        total += size
    if not conns:
        return {"error": "nothing captured"}
    first = min(v[0] for v in conns.values())
    last = max(v[1] for v in conns.values())
    gossip = [v for v in conns.values() if v[1] - v[0] >= 0.5 * (last - first)]
    payload = int(sum(v[2] for v in gossip))
    return {"connections": len(conns), "gossip_connections": len(gossip),
            "tcp_payload_bytes_all": total, "tcp_payload_bytes_gossip": payload,
            "counted_bytes": counted, "gossip_tcp_payload_over_counted": payload / max(1, counted)}
