"""The public Python API: ``seedfl.__all__`` pinned, and two in-process nodes.

The two nodes run on one event loop over real gRPC on loopback (port 0),
static peers, no mDNS; every wait is ``Node.wait_for`` or a polled condition
with a deadline.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import seedfl
from seedfl.core.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from nodekit import TINY_CONFIG, write_data

PUBLIC = ["Node", "NodeOptions", "NodeStatus", "PROTOCOL_VERSION", "PeerStatus",
          "SwarmConfig", "__version__", "load_config", "parse_config"]


def test_public_names_are_pinned_and_resolve() -> None:
    assert sorted(seedfl.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(seedfl, name) is not None
    with pytest.raises(AttributeError):
        _ = seedfl.NotAThing  # type: ignore[attr-defined]


def test_import_seedfl_is_cheap() -> None:
    code = "import sys, seedfl; print(sorted(m for m in ('torch', 'grpc') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_python_m_seedfl_help() -> None:
    run = subprocess.run([sys.executable, "-m", "seedfl", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "usage: seedfl" in run.stdout and "run" in run.stdout


async def _until(pred, deadline_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while not (value := pred()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


def test_two_in_process_nodes_reach_equal_vectors(tmp_path: Path) -> None:
    cfg_path = tmp_path / "swarm.toml"
    cfg_path.write_text(TINY_CONFIG)

    async def main() -> None:
        first = seedfl.Node(config=str(cfg_path), data=write_data(tmp_path / "a.jsonl", 40, 1),
                            state_dir=tmp_path / "n1", listen="127.0.0.1:0", mdns=False,
                            max_steps=20)
        async with first as a:
            # The second takes a parsed config: the same swarm, nothing read from disk.
            config = seedfl.load_config(cfg_path)
            async with seedfl.Node(config=config, data=write_data(tmp_path / "b.jsonl", 40, 2),
                                   state_dir=tmp_path / "n2", listen="127.0.0.1:0",
                                   mdns=False, peers=[a.address], max_steps=20) as b:
                await a.wait_for(steps=20, timeout=120)
                await b.wait_for(steps=20, timeout=120)
                def settled() -> tuple[seedfl.NodeStatus, seedfl.NodeStatus] | None:
                    sa, sb = a.status(), b.status()
                    same = sa.version_vector == sb.version_vector
                    return (sa, sb) if same and sum(sa.version_vector.values()) == 40 else None

                sa, _ = await _until(settled, 120, "equal version vectors")
                assert isinstance(sa, seedfl.NodeStatus)
                assert sa.version_vector == {a.node_id.hex(): 20, b.node_id.hex(): 20}
                await a.wait_for(applied=40, timeout=60)
                st = await b.wait_for(applied=40, timeout=60)
                assert st.applied_total == 40 and st.own_seq == 20
                assert any(p.node_id == a.node_id.hex() and p.state == "alive"
                           for p in st.peers)
                model = await b.model()
                # Plain transformers: no seedfl tensors left, a head over the whole vocabulary.
                assert not any("seedfl" in n for n, _ in model.named_parameters())
                ids = torch.tensor([[1, 2, 3]])
                assert model(input_ids=ids).logits.shape == (1, 3, model.config.vocab_size)
                with pytest.raises(TimeoutError):
                    await b.wait_for(steps=10_000, timeout=0.2)
        with pytest.raises(RuntimeError):
            first.status()

    asyncio.run(main())


def test_a_second_node_on_a_state_dir_in_use_is_refused_then_admitted(tmp_path: Path) -> None:
    cfg_path = tmp_path / "swarm.toml"
    cfg_path.write_text(TINY_CONFIG)
    opts = {"config": str(cfg_path), "state_dir": tmp_path / "n", "listen": "127.0.0.1:0",
            "mdns": False}

    async def main() -> None:
        async with seedfl.Node(**opts) as a:
            with pytest.raises(UserError, match="in use by pid"):
                await seedfl.Node(**opts).start()
            assert a.status().node_id == a.node_id.hex()  # the holder is unharmed
            identity = a.node_id
        # Stopped: the directory is free again, the identity kept.
        async with seedfl.Node(**opts) as again:
            assert again.node_id == identity

    asyncio.run(main())
