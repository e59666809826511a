"""Throwaway test hosts: network namespaces joined by a bridge.

``Lan`` creates one namespace holding a bridge and N host namespaces, each
with a veth into the bridge and an address in a private /24 that exists only
inside these namespaces. Everything is removed in ``close()``. Tests that use
it are skipped (with the reason) when not root or when ``ip`` is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (the ip command)"
    probe = f"sflprobe{secrets.token_hex(3)}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class Lan:
    def __init__(self, hosts: int) -> None:
        tag = secrets.token_hex(3)
        self.bridge_ns = f"sflbr{tag}"
        self.hosts = [f"sfl{tag}h{i}" for i in range(1, hosts + 1)]
        self.subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.addresses = [f"{self.subnet}.{i}" for i in range(1, hosts + 1)]
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self.bridge_ns)
        _ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
        _ip("link", "set", "br0", "up", ns=self.bridge_ns)
        for i, (ns, addr) in enumerate(zip(self.hosts, self.addresses, strict=True)):
            _ip("netns", "add", ns)
            _ip("link", "set", "lo", "up", ns=ns)
            a, b = f"sflv{i}a{ns[-6:]}"[:15], f"sflv{i}b{ns[-6:]}"[:15]
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", ns)
            _ip("link", "set", b, "netns", self.bridge_ns)
            _ip("link", "set", b, "master", "br0", ns=self.bridge_ns)
            _ip("link", "set", b, "up", ns=self.bridge_ns)
            _ip("link", "set", a, "name", "eth0", ns=ns)
            _ip("addr", "add", f"{addr}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            # No default route in a fresh namespace: give multicast one.
            _ip("route", "add", "224.0.0.0/4", "dev", "eth0", ns=ns)

    def cut(self, host: int) -> None:
        _ip("link", "set", "eth0", "down", ns=self.hosts[host])

    def restore(self, host: int) -> None:
        _ip("link", "set", "eth0", "up", ns=self.hosts[host])
        subprocess.run(["ip", "netns", "exec", self.hosts[host], "ip", "route", "replace",
                        "224.0.0.0/4", "dev", "eth0"], capture_output=True)

    def wrap(self, host: int, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[host], *cmd]

    def close(self) -> None:
        for ns in [*self.hosts, self.bridge_ns]:
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
