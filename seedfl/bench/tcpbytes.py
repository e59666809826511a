"""Bytes the kernel carried on TCP connections, read with ``ss -tin`` (no root,
no packet capture).

``snapshot(ports)`` returns, for every established socket with one end on one
of ``ports``, the kernel's cumulative ``bytes_acked`` (payload we sent and the
peer acknowledged) and ``bytes_received``. Two snapshots around a window give
what each long-lived connection carried in between (``carried``); sockets that
exist in only one snapshot (short Status calls) are left out. On loopback both
ends of a connection are sockets of this host, so the sum of ``bytes_acked``
over both ends is every payload byte that crossed the connection, in both
directions, once. TCP/IP headers are not payload and are not counted.

This module knows nothing of seedfl; ``parse`` is pure and tested on text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable

__all__ = ["Socket", "carried", "parse", "snapshot"]

Socket = tuple[str, str]  # (local address:port, peer address:port)
_COUNTER = re.compile(r"\b(bytes_acked|bytes_received):(\d+)")


def parse(text: str) -> dict[Socket, dict[str, int]]:
    """``ss -tinH`` output → socket → {bytes_acked, bytes_received}."""
    out: dict[Socket, dict[str, int]] = {}
    current: Socket | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():  # a socket line: [state] recv-q send-q local peer
            fields = line.split()
            addrs = [f for f in fields if ":" in f and f[-1].isdigit()]
            current = (addrs[0], addrs[1]) if len(addrs) >= 2 else None
            if current is not None:
                out[current] = {"bytes_acked": 0, "bytes_received": 0}
            continue
        if current is not None:
            for name, value in _COUNTER.findall(line):
                out[current][name] = int(value)
    return out


def _port(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def snapshot(ports: Iterable[int]) -> dict[Socket, dict[str, int]]:
    """Established TCP sockets with either end on ``ports``, with their counters."""
    wanted = set(ports)
    exe = shutil.which("ss")
    if exe is None:
        raise RuntimeError("`ss` (iproute2) is needed to read kernel TCP counters")
    res = subprocess.run([exe, "-tinH", "state", "established"], capture_output=True,
                         text=True, check=True)
    return {s: c for s, c in parse(res.stdout).items()
            if _port(s[0]) in wanted or _port(s[1]) in wanted}


def carried(before: dict[Socket, dict[str, int]],
            after: dict[Socket, dict[str, int]]) -> dict[str, int]:
    """Payload bytes sent (acked) on sockets present in both snapshots, and how many."""
    common = set(before) & set(after)
    sent = sum(after[s]["bytes_acked"] - before[s]["bytes_acked"] for s in common)
    return {"tcp_payload_bytes": sent, "connections": len(common) // 2 or len(common)}
