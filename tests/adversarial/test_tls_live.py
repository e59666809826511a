"""Mutual TLS between real ``seedfl run`` nodes (issue 11): two nodes with
certificates from one `seedfl certs` CA train together; a client without a
valid certificate (plaintext, another CA's, none at all) and a whole node with
another CA's certificate are refused at the TLS layer and never link."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from nodekit import TINY_CONFIG, NodeProc, stop_all, wait_for, write_data

from seedfl.net.certs import make_certs
from seedfl.net.control import fetch_status, fetch_status_async
from seedfl.net.tls import SERVER_NAME, TLSFiles

pytestmark = pytest.mark.timeout(300)


def _files(d: Path, name: str) -> TLSFiles:
    return TLSFiles(str(d / f"{name}.pem"), str(d / f"{name}.key"), str(d / "ca.pem"))


def _flags(tls: TLSFiles) -> list[str]:
    return ["--tls-cert", tls.cert, "--tls-key", tls.key, "--tls-ca", tls.ca,
            "--step-interval", "0.05"]


async def _outsider_codes(address: str, swarm: Path, rogue: Path) -> list[grpc.StatusCode]:
    """Status asked as each kind of outsider: the code each call ends with."""
    codes = []
    attempts = [
        None,  # plaintext against a TLS port
        _files(rogue, "m"),  # another CA's certificate (and trusting the swarm's CA)
    ]
    for tls in attempts:
        if tls is not None:
            tls = TLSFiles(tls.cert, tls.key, str(swarm / "ca.pem"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await fetch_status_async(address, timeout=5, tls=tls)
        codes.append(info.value.code())
    # No client certificate at all, server verified: refused by mutual TLS.
    creds = grpc.ssl_channel_credentials(root_certificates=(swarm / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(
            address, creds, options=[("grpc.ssl_target_name_override", SERVER_NAME)]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary("/seedfl.v1.Control/Status")(b"", timeout=5)
        codes.append(info.value.code())
    return codes


def test_mutual_tls_nodes_train_together_and_outsiders_are_refused(tmp_path: Path) -> None:
    swarm, rogue = tmp_path / "certs", tmp_path / "rogue"
    make_certs(swarm, ["a", "b", "operator"])
    make_certs(rogue, ["m"])
    cfg = tmp_path / "swarm.toml"
    cfg.write_text(TINY_CONFIG)
    op = _files(swarm, "operator")
    nodes: list[NodeProc] = []
    try:
        a = NodeProc(tmp_path / "a", cfg, write_data(tmp_path / "a.jsonl", 60, 1), [],
                     extra=_flags(_files(swarm, "a")))
        nodes.append(a)
        b = NodeProc(tmp_path / "b", cfg, write_data(tmp_path / "b.jsonl", 60, 2),
                     [a.address()], extra=_flags(_files(swarm, "b")))
        nodes.append(b)

        def both() -> list[dict] | None:
            ss = [fetch_status(n.address(), 5, tls=op).to_dict() for n in nodes]
            ids = {s["node_id"] for s in ss}
            ok = all(set(s["version_vector"]) == ids and min(s["version_vector"].values()) >= 5
                     for s in ss)
            return ss if ok else None

        before = wait_for(both, 120, "two TLS nodes to exchange updates")
        codes = asyncio.run(_outsider_codes(a.address(), swarm, rogue))
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 3, codes

        # A whole node with another CA's certificate dials A and B: never linked.
        c = NodeProc(tmp_path / "c", cfg, write_data(tmp_path / "c.jsonl", 60, 3),
                     [a.address(), b.address()],
                     extra=_flags(TLSFiles(str(rogue / "m.pem"), str(rogue / "m.key"),
                                           str(rogue / "ca.pem"))))
        nodes.append(c)
        c.address()
        began = time.monotonic()
        while time.monotonic() - began < 8:  # several dial attempts (backoff 0.5 s..)
            for s in (fetch_status(n.address(), 5, tls=op).to_dict() for n in (a, b)):
                assert len(s["version_vector"]) == 2, s["version_vector"]
                assert all(p["node_id"] in {x["node_id"] for x in before}
                           for p in s["peers"]), s["peers"]
            time.sleep(0.5)
        assert c.proc.poll() is None, c.log()
    finally:
        stop_all(nodes)
