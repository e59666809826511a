"""``seedfl plot`` and its input, ``<state>/history.jsonl``.

The PNG is decoded back here with zlib (the encoder writes filter 0 on every
row) so the tests can look at the pixels of the curves.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from seedfl import cli
from seedfl.core.status import PeerStatus
from seedfl.net.control import status_from_proto
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb
from seedfl.observe import history
from seedfl.observe.plot import ACC_COLOR, EVAL_COLOR, LOSS_COLOR, nice_ticks, tick_label


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of an 8-bit RGB, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(tag + body), tag
        if tag == b"IHDR":
            ihdr = body
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    assert tag == b"IEND"
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert (depth, ctype, interlace) == (8, 2, 0)
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + 3 * w)
    rows = [raw[y * (1 + 3 * w):(y + 1) * (1 + 3 * w)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return w, h, b"".join(r[1:] for r in rows)


def pixels_of(png: tuple[int, int, bytes], color: tuple[int, int, int]) -> list[tuple[int, int]]:
    w, _, rgb = png
    c = bytes(color)
    return [(i // 3 % w, i // 3 // w) for i in range(0, len(rgb), 3) if rgb[i:i + 3] == c]


def write_history(state: Path, rows: list[dict[str, Any]]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    for r in rows:
        history.append_row(state / history.HISTORY_FILE, r)


def train(i: int, loss: float | None) -> dict[str, Any]:
    return {"kind": "train", "t": float(i), "own_seq": i, "applied_total": 10 * i,
            "loss_ema": loss}


def test_decreasing_loss_draws_a_falling_curve(tmp_path: Path, capsys: Any) -> None:
    rows = [train(i, 2.0 * math.exp(-i / 40) + 0.3) for i in range(200)]
    rows[5]["loss_ema"] = None  # before the first step
    rows[6]["loss_ema"] = float("nan")  # a diverged value is skipped, not drawn
    write_history(tmp_path / "s", rows)
    out = tmp_path / "curves.png"
    assert cli.main(["plot", "--state-dir", str(tmp_path / "s"), "--out", str(out)]) == 0
    assert "200 history rows" in capsys.readouterr().out
    png = decode_png(out.read_bytes())
    assert png[:2] == (900, 420)  # one panel: no eval rows
    curve = pixels_of(png, LOSS_COLOR)
    assert len(curve) > 500
    xs = [x for x, _ in curve]
    left, right = min(xs), max(xs)
    assert right - left > 600  # spans the plot width
    y_left = sum(y for x, y in curve if x == left) / xs.count(left)
    y_right = sum(y for x, y in curve if x == right) / xs.count(right)
    assert y_right - y_left > 200  # image y grows downwards: the loss fell
    assert not pixels_of(png, ACC_COLOR) and not pixels_of(png, EVAL_COLOR)


def test_eval_rows_add_points_and_an_accuracy_panel(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [train(i, 1.0 - i / 200) for i in range(100)]
    for k in range(5):
        rows.append(history.eval_row({"updates_applied": 200 * k, "loss": 1.1 - k / 10,
                                      "accuracy": 0.5 + k / 10, "examples": 64}, "v.jsonl"))
    write_history(tmp_path / "s", rows)
    out = tmp_path / "c.png"
    assert cli.main(["plot", "--state-dir", str(tmp_path / "s"), "--out", str(out),
                     "--width", "640"]) == 0
    png = decode_png(out.read_bytes())
    assert png[:2] == (640, 720)
    acc = pixels_of(png, ACC_COLOR)
    loss = pixels_of(png, LOSS_COLOR)
    assert pixels_of(png, EVAL_COLOR) and acc
    # The accuracy panel is below the loss panel, and its curve rises.
    assert min(y for _, y in acc) > max(y for _, y in loss)
    xs = [x for x, _ in acc]
    lo, hi = min(xs), max(xs)
    assert (sum(y for x, y in acc if x == lo) / xs.count(lo)
            > sum(y for x, y in acc if x == hi) / xs.count(hi))


def test_plot_without_history_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    assert cli.main(["plot", "--state-dir", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "history.jsonl" in capsys.readouterr().err
    write_history(tmp_path, [train(0, None)])
    assert cli.main(["plot", "--state-dir", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "no loss values" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("lo", "hi", "ticks"), [
    (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0.27, 0.83, [0.4, 0.6, 0.8]),
    (0.27, 1.13, [0.4, 0.6, 0.8, 1.0]),
    (-3.0, 12000.0, [0.0, 5000.0, 10000.0]),
    (-3.0, 9000.0, [0.0, 2000.0, 4000.0, 6000.0, 8000.0]),
    (5.0, 5.0, [4.0, 4.5, 5.0, 5.5, 6.0]),
])
def test_nice_ticks(lo: float, hi: float, ticks: list[float]) -> None:
    assert nice_ticks(lo, hi) == ticks


def test_tick_labels() -> None:
    assert [tick_label(v, 0.2) for v in (0.0, 0.4)] == ["0.0", "0.4"]
    assert tick_label(12000.0, 2000.0) == "12K"
    assert tick_label(300.0, 100.0) == "300"
    assert tick_label(2e-5, 1e-5) == "2.0E-05"


# -- history.jsonl ------------------------------------------------------------------

def _peer(state: str) -> PeerStatus:
    return PeerStatus(node_id="", name="", address="", state=state, last_seen_s=-1.0,
                      rtt_ms=0.0, updates_from=0, lag=0)


STATUS = replace(status_from_proto(pb.StatusReply()),
                 uptime_s=3.0, own_seq=7, applied_total=20, loss_ema=0.5,
                 steps_per_s=1.25, total_bytes_out=900, total_bytes_in=800,
                 payload_bytes_out=7, payload_bytes_in=13,
                 peers=(_peer("alive"), _peer("dead")))


def test_recorder_appends_status_rows(tmp_path: Path) -> None:
    rec = history.HistoryRecorder(tmp_path, lambda: STATUS)
    rec.record()
    rec.record()
    with (tmp_path / history.HISTORY_FILE).open("a") as fh:
        fh.write('{"kind": "train", "own_')  # a torn last line, as after a crash
    rows = history.read_rows(tmp_path / history.HISTORY_FILE)
    assert len(rows) == 2
    row = rows[0]
    assert {k: row[k] for k in ("kind", "own_seq", "applied_total", "loss_ema", "steps_per_s",
                                "bytes_out", "bytes_in", "peers_alive")} == {
        "kind": "train", "own_seq": 7, "applied_total": 20, "loss_ema": 0.5,
        "steps_per_s": 1.25, "bytes_out": 900, "bytes_in": 800, "peers_alive": 1}


def test_recorder_survives_an_unwritable_directory(tmp_path: Path) -> None:
    rec = history.HistoryRecorder(tmp_path / "missing", lambda: STATUS)
    rec.record()  # logs once, raises nothing
    assert not (tmp_path / "missing").exists()


def test_history_is_compacted_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / history.HISTORY_FILE
    cap = 20_000
    for i in range(2000):
        history.append_row(path, {"kind": "train", "own_seq": i, "applied_total": i}, cap)
        if i % 500 == 0:
            history.append_row(path, {"kind": "eval", "applied_total": i, "loss": 1.0}, cap)
        assert path.stat().st_size <= cap
    rows = history.read_rows(path)
    seqs = [r["own_seq"] for r in rows if r["kind"] == "train"]
    assert seqs[0] == 0 and seqs[-1] == 1999  # both ends of the run survive
    assert seqs == sorted(seqs) and len(seqs) < 2000
    assert [r["applied_total"] for r in rows if r["kind"] == "eval"] == [0, 500, 1000, 1500]
