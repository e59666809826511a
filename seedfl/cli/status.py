"""``seedfl status`` and ``seedfl peers``: read-only views of a node and the LAN.

``status`` asks one node's Control service (its address, or the local node's,
found in ``<state-dir>/node.addr``) and prints a summary plus the peer table,
or its JSON form (``NodeStatus.to_dict``) with ``--json``. ``peers`` browses
mDNS for every seedfl service without joining anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc

from seedfl.core.errors import UsageError
from seedfl.core.status import NodeStatus
from seedfl.net.control import fetch_status
from seedfl.net.tls import TLSFiles

EXIT_UNREACHABLE = 3


def _local_address(state_dir: str | None) -> str:
    from seedfl.training.statedir import default_state_dir

    path = (Path(state_dir) if state_dir else default_state_dir()) / "node.addr"
    if not path.exists():
        raise UsageError(f"no local node found ({path} is missing); start one with `seedfl run` "
                         "or give its address: seedfl status HOST:PORT")
    return path.read_text().strip()


def _age(seconds: float) -> str:
    if seconds < 0:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _catchup_line(s: NodeStatus) -> str:
    metrics = s.metrics
    line = (f"catch-up  {s.catchup_method}  {s.catchup_state} "
            f"{100 * s.catchup_progress:.0f}%")
    if metrics.get("catchup_stalled_missing"):
        line += (f"  (stalled: {int(metrics['catchup_stalled_missing']):,} claimed updates "
                 "never arrived; training on what we have)")
    if metrics.get("catchup_peers_asked"):
        line += f"  ({int(metrics['catchup_peers_asked'])} peers asked)"
    if metrics.get("catchup_state_bytes"):
        line += f"  model state {int(metrics['catchup_state_bytes']):,} B"
    if "pool_size" in metrics:
        line += (f"  | pool {s.pool_digest[:16]}  slots "
                 f"{int(metrics.get('pool_slots_used', 0))}/{int(metrics['pool_size'])}")
    return line + f"  coalescing {metrics.get('coalescing_ratio', 1.0):.2f}x"


def format_status(s: NodeStatus) -> str:
    """What ``seedfl status`` prints: a summary, then the peer table."""
    loss = "-" if s.loss_ema is None else f"{s.loss_ema:.4f}"
    div = "-" if s.divergence is None else f"{s.divergence:.2e}"
    rejected = sum(s.updates_rejected.values())
    lines = [
        f"node      {s.name}  id {s.node_id[:16]}  seedfl {s.software_version} "
        f"(protocol {s.protocol_version})  at {s.address}",
        f"swarm     key {s.swarm_key[:16]}  config {s.config_fingerprint[:8]}  "
        f"state {s.state}  up {_age(s.uptime_s)}",
        f"training  own seq {s.own_seq}  applied {s.applied_total}  loss~{loss}  "
        f"{s.steps_per_s:.2f} steps/s  trainable {s.trainable_params:,}",
        f"replicas  vv {s.vv_digest[:16]}  applied {s.applied_vv_digest[:16]}  "
        f"divergence {div}",
        f"traffic   payload in {s.payload_bytes_in} B / out {s.payload_bytes_out} B  "
        f"total in {s.total_bytes_in} B / out {s.total_bytes_out} B",
        f"updates   sent {s.updates_sent}  received {s.updates_received}  "
        f"duplicate {s.updates_duplicate}  rejected {rejected}",
        f"links     {s.links} open of at most {s.active_view or 'any'}  "
        f"({s.alive_peers} members alive; * = linked)",
        _catchup_line(s),
    ]
    if s.diverged:
        lines.append(f"DIVERGED  {s.diverged}")
    lines += [
        "",
        f"{'PEER':<18}{'NAME':<14}{'ADDRESS':<22}{'STATE':<9}{'SEEN':>7}{'RTT':>9}"
        f"{'UPDATES':>9}{'LAG':>7}",
    ]
    for p in sorted(s.peers, key=lambda p: p.name):
        rtt = f"{p.rtt_ms:.1f}ms" if p.rtt_ms else "-"
        mark = "*" if p.connected else " "
        lines.append(f"{mark}{p.node_id[:16]:<17}{p.name[:13]:<14}{p.address[:21]:<22}"
                     f"{p.state:<9}{_age(p.last_seen_s):>7}{rtt:>9}"
                     f"{p.updates_from:>9}{p.lag:>7}")
    if not s.peers:
        lines.append("(no peers yet: check that peers run the same swarm.toml, that mDNS "
                     "multicast is allowed, or pass --peer host:port)")
    return "\n".join(lines)


def status_command(args: argparse.Namespace) -> int:
    address = args.address or _local_address(args.state_dir)
    tls = TLSFiles.maybe(args.tls_cert, args.tls_key, args.tls_ca)
    while True:
        try:
            s = fetch_status(address, args.timeout, tls=tls)
        except grpc.aio.AioRpcError as exc:
            hint = " (with TLS? give --tls-cert/--tls-key/--tls-ca)" if tls is None else ""
            print(f"seedfl status: cannot reach a node at {address}: {exc.code().name} "
                  f"({exc.details()}); is `seedfl run` running there?{hint}", file=sys.stderr)
            return EXIT_UNREACHABLE
        if args.json:
            print(json.dumps(s.to_dict(), sort_keys=True))
        else:
            if args.watch:
                print("\033[2J\033[H", end="")
            print(format_status(s))
        if not args.watch:
            return 0
        time.sleep(args.interval)


def peers_command(args: argparse.Namespace) -> int:
    from seedfl.net.mdns import discover

    records = asyncio.run(discover(args.timeout, interface=args.interface))
    rows = [{"instance": r.instance, "endpoints": r.endpoints, "swarm": r.swarm,
             "node_id": r.node_id, "config": r.txt.get("fp", ""), "protocol": r.txt.get("v", "")}
            for r in records]
    if args.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    if not rows:
        print(f"no seedfl nodes answered within {args.timeout:.0f}s (mDNS may be blocked on "
              "this network: try --interface ADDR, or ask a node with `seedfl status HOST:PORT`)")
        return 0
    print(f"{'INSTANCE':<28}{'ENDPOINT':<24}{'SWARM':<18}{'CONFIG':<18}")
    for r in rows:
        print(f"{r['instance'][:27]:<28}{(r['endpoints'] or ['-'])[0]:<24}"
              f"{r['swarm'][:16]:<18}{r['config'][:16]:<18}")
    return 0
