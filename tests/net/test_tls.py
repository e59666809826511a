"""TLS in-process: `seedfl certs` files give a working handshake over TLS on
127.0.0.1:0, mutual mode refuses a client without a certificate and server
mode admits it, and a half-given set of files is a usage error, never a
silent fall-back to plaintext."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from netkit import Door, dial

from seedfl.core.config import parse_config
from seedfl.core.errors import UsageError
from seedfl.net.certs import make_certs
from seedfl.net.connection import PeerConnection
from seedfl.net.servicer import PeerServicer, build_server
from seedfl.net.tls import SERVER_NAME, TLSFiles


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_certs(out, ["server", "client"])
    return out


def _files(d: Path, name: str, mutual: bool = True) -> TLSFiles:
    return TLSFiles(str(d / f"{name}.pem"), str(d / f"{name}.key"), str(d / "ca.pem"), mutual)


async def _hello_over(server_tls: TLSFiles, client_tls: TLSFiles | None) -> bytes:
    server = await build_server(PeerServicer(Door()), "127.0.0.1:0", tls=server_tls)
    try:
        async with PeerConnection(f"127.0.0.1:{server.port}", tls=client_tls) as conn:
            session = await asyncio.wait_for(conn.connect(dial(1)), 10)
            return session.peer.node_id
    finally:
        await server.stop(0.2)


async def _no_cert_client(server_tls: TLSFiles, ca: Path) -> grpc.StatusCode:
    server = await build_server(PeerServicer(Door()), "127.0.0.1:0", tls=server_tls)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        async with grpc.aio.secure_channel(
                f"127.0.0.1:{server.port}", creds,
                options=[("grpc.ssl_target_name_override", SERVER_NAME)]) as ch:
            try:
                await ch.unary_unary("/seedfl.v1.Peer/Hello")(b"", timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK
    finally:
        await server.stop(0.2)


def test_handshake_over_mutual_tls(certs: Path) -> None:
    peer_id = asyncio.run(_hello_over(_files(certs, "server"), _files(certs, "client")))
    assert peer_id == b"\x09" * 16


def test_plaintext_client_of_a_tls_port_is_refused(certs: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the channel never becomes ready
        asyncio.run(asyncio.wait_for(_hello_over(_files(certs, "server"), None), 15))


def test_mutual_refuses_a_client_without_a_certificate_server_mode_admits_it(
        certs: Path) -> None:
    ca = certs / "ca.pem"
    assert asyncio.run(_no_cert_client(_files(certs, "server"), ca)) == \
        grpc.StatusCode.UNAVAILABLE
    # Server-only TLS: the connection is admitted; the empty Hello is then refused
    # by the application (INVALID_ARGUMENT), not by TLS.
    assert asyncio.run(_no_cert_client(_files(certs, "server", mutual=False), ca)) == \
        grpc.StatusCode.INVALID_ARGUMENT


def test_some_but_not_all_files_is_a_usage_error_naming_the_missing() -> None:
    assert TLSFiles.maybe(None, None, None) is None
    with pytest.raises(UsageError, match="missing: --tls-key, --tls-ca"):
        TLSFiles.maybe("a.pem", None, None)
    with pytest.raises(UsageError, match="cannot read the TLS key"):
        TLSFiles("a.pem", "/nonexistent/a.key", "ca.pem").server_credentials()


def test_tls_keys_parse_and_stay_out_of_the_fingerprint() -> None:
    base = '[model]\nname = "seedfl:tiny"\n[task]\ntype = "causal_lm"\n'
    with_tls = parse_config(base + '[tls]\ncert = "n.pem"\nkey = "n.key"\nca = "ca.pem"\n'
                            "mutual = false\n")
    assert (with_tls.tls.cert, with_tls.tls.mutual) == ("n.pem", False)
    assert with_tls.fingerprint() == parse_config(base).fingerprint()
