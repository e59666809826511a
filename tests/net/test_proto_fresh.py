"""The committed generated code is exactly what `python -m seedfl.net.protogen` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from seedfl.net import protogen

pytest.importorskip("grpc_tools")


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    written = protogen.generate(out_root=tmp_path)
    committed = sorted(
        p.relative_to(protogen.OUT_ROOT)
        for p in protogen.OUT_ROOT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert written == committed, "generated file set differs: run python -m seedfl.net.protogen"
    stale = [
        str(rel)
        for rel in written
        if (tmp_path / rel).read_bytes() != (protogen.OUT_ROOT / rel).read_bytes()
    ]
    assert not stale, f"stale generated files {stale}: run python -m seedfl.net.protogen"
    # Both services and every message of the contract are present.
    names = {rel.name for rel in written}
    assert {"peer_pb2.py", "peer_pb2.pyi", "peer_pb2_grpc.py", "control_pb2_grpc.py"} <= names


def test_generated_modules_import_from_the_package() -> None:
    from seedfl.net.proto.seedfl.v1 import control_pb2, peer_pb2, peer_pb2_grpc

    frame = peer_pb2.Frame(ping=peer_pb2.Ping(nonce=7, sent_at=1.5))
    assert peer_pb2.Frame.FromString(frame.SerializeToString()).ping.nonce == 7
    assert frame.WhichOneof("kind") == "ping"
    assert peer_pb2.Frame.__module__ == "seedfl.net.proto.seedfl.v1.peer_pb2"
    assert hasattr(peer_pb2_grpc, "PeerStub")
    assert control_pb2.DESCRIPTOR.services_by_name["Control"].methods_by_name["Status"]
