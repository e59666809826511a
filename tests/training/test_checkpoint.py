"""Checkpoints: round trip, keep the newest two, fall back past a corrupt newest one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from seedfl.core.version_vector import VersionVector
from seedfl.training.checkpoint import FORMAT, FORMAT_BLOBS, load_latest, save_checkpoint

A, B = b"\x01" * 16, b"\x02" * 16
NAMES = ["lm_head.weight", "model.norm.weight"]


def params(value: float) -> list[torch.Tensor]:
    return [torch.full((4, 3), value), torch.arange(5, dtype=torch.float32) + value]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_round_trip(tmp_path: Path) -> None:
    vv = VersionVector({A: 3, B: 4})
    path = save_checkpoint(tmp_path, NAMES, params(0.25), vv, {"steps": 9})
    assert path.name == "ckpt-7.safetensors"
    ck = load_latest(tmp_path)
    assert ck is not None and ck.path == path and ck.skipped == []
    assert ck.names == NAMES and ck.vv == vv and ck.extra == {"steps": 9}
    for got, want in zip(ck.tensors, params(0.25), strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)


def test_saved_copy_does_not_follow_later_changes(tmp_path: Path) -> None:
    theta = params(1.0)
    save_checkpoint(tmp_path, NAMES, theta, VersionVector({A: 1}), {})
    theta[0].add_(5.0)
    ck = load_latest(tmp_path)
    assert ck is not None and torch.equal(ck.tensors[0], torch.full((4, 3), 1.0))


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "absent") is None


def test_keeps_the_newest_two(tmp_path: Path) -> None:
    for n in (1, 2, 10, 11):
        save_checkpoint(tmp_path, NAMES, params(n), VersionVector({A: n}), {"n": n})
    assert files(tmp_path) == ["ckpt-10.safetensors", "ckpt-11.safetensors"]
    ck = load_latest(tmp_path)
    assert ck is not None and ck.vv.total() == 11 and ck.extra == {"n": 11}


def test_corrupt_newest_falls_back_to_previous(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, NAMES, params(1.0), VersionVector({A: 5}), {"n": 5})
    newest = save_checkpoint(tmp_path, NAMES, params(2.0), VersionVector({A: 6}), {"n": 6})
    blob = bytearray(newest.read_bytes())
    blob[-3] ^= 0xFF  # flip bits in the tensor payload: still parses, hash mismatches
    newest.write_bytes(bytes(blob))
    ck = load_latest(tmp_path)
    assert ck is not None and ck.vv == VersionVector({A: 5}) and ck.extra == {"n": 5}
    assert torch.equal(ck.tensors[0], torch.full((4, 3), 1.0))
    assert [p for p, _ in ck.skipped] == [newest] and "sha256" in ck.skipped[0][1]


def test_truncated_newest_falls_back_and_stale_temp_is_removed(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, NAMES, params(1.0), VersionVector({A: 5}), {})
    torn = tmp_path / "ckpt-9.safetensors"
    torn.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a")
    ck = load_latest(tmp_path)
    assert ck is not None and ck.vv.total() == 5 and [p for p, _ in ck.skipped] == [torn]
    stale = tmp_path / ".ckpt-12.safetensors.999999.tmp"
    stale.write_bytes(b"partial")
    save_checkpoint(tmp_path, NAMES, params(3.0), VersionVector({A: 12}), {})
    assert "ckpt-12.safetensors" in files(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_all_corrupt_gives_none(tmp_path: Path) -> None:
    (tmp_path / "ckpt-3.safetensors").write_bytes(b"junk")
    assert load_latest(tmp_path) is None


def test_blobs_ride_along_and_are_hashed(tmp_path: Path) -> None:
    vv = VersionVector({A: 2})
    state = bytes(range(200)) * 3
    path = save_checkpoint(tmp_path, NAMES, params(0.5), vv, {}, blobs={"pool": state, "e": b""})
    meta = safe_open(str(path), framework="pt").metadata()
    assert meta["format"] == FORMAT_BLOBS and json.loads(meta["blobs"]) == ["e", "pool"]
    ck = load_latest(tmp_path)
    assert ck is not None and ck.blobs == {"pool": state, "e": b""}
    assert ck.names == NAMES and len(ck.tensors) == 2  # blobs are not tensors of θ
    # A flipped byte inside the blob fails the payload hash like any tensor byte.
    data = bytearray(path.read_bytes())
    data[data.index(state[:64]) + 10] ^= 0x01
    path.write_bytes(bytes(data))
    assert load_latest(tmp_path) is None


def test_checkpoints_without_blobs_keep_format_v1(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, NAMES, params(0.5), VersionVector({A: 1}), {})
    assert safe_open(str(path), framework="pt").metadata()["format"] == FORMAT
    ck = load_latest(tmp_path)
    assert ck is not None and ck.blobs == {}
    with pytest.raises(ValueError, match="may not start with"):
        save_checkpoint(tmp_path, ["__blob__.x"], params(0.5)[:1], VersionVector(), {})
