"""``seedfl plot`` and its input, ``<state>/history.jsonl``.

The figure is checked as matplotlib objects (which panels, which series, where
the curves go) and the written file as a PNG of the asked size.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from seedfl import cli
from seedfl.core.status import PeerStatus
from seedfl.net.control import status_from_proto
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb
from seedfl.observe import history
from seedfl.observe.plot import ACC_COLOR, EVAL_COLOR, LOSS_COLOR, render, render_curves


def write_history(state: Path, rows: list[dict[str, Any]]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    for r in rows:
        history.append_row(state / history.HISTORY_FILE, r)


def train(i: int, loss: float | None) -> dict[str, Any]:
    return {"kind": "train", "t": float(i), "own_seq": i, "applied_total": 10 * i,
            "loss_ema": loss}


def png_size(path: Path) -> tuple[int, int]:
    img = matplotlib.image.imread(io.BytesIO(path.read_bytes()), format="png")
    return img.shape[1], img.shape[0]


def lines_of(ax: Any, color: str) -> list[Any]:
    return [ln for ln in ax.get_lines() if ln.get_color() == color]


def test_decreasing_loss_draws_a_falling_curve(tmp_path: Path, capsys: Any) -> None:
    rows = [train(i, 2.0 * math.exp(-i / 40) + 0.3) for i in range(200)]
    rows[5]["loss_ema"] = None  # before the first step
    rows[6]["loss_ema"] = float("nan")  # a diverged value is skipped, not drawn
    write_history(tmp_path / "s", rows)
    out = tmp_path / "curves.png"
    assert cli.main(["plot", "--state-dir", str(tmp_path / "s"), "--out", str(out)]) == 0
    assert "200 history rows" in capsys.readouterr().out
    assert png_size(out) == (900, 420)  # one panel: no eval rows
    fig = render(rows)
    assert len(fig.axes) == 1
    (curve,) = lines_of(fig.axes[0], LOSS_COLOR)
    xs, ys = curve.get_xdata(), curve.get_ydata()
    assert len(xs) == 198 and all(map(math.isfinite, ys))
    assert xs[0] == 0 and xs[-1] == 1990 and ys[0] - ys[-1] > 1.5  # the loss fell
    assert not lines_of(fig.axes[0], ACC_COLOR) and not lines_of(fig.axes[0], EVAL_COLOR)


def test_eval_rows_add_points_and_an_accuracy_panel(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [train(i, 1.0 - i / 200) for i in range(100)]
    for k in range(5):
        rows.append(history.eval_row({"updates_applied": 200 * k, "loss": 1.1 - k / 10,
                                      "accuracy": 0.5 + k / 10, "examples": 64}, "v.jsonl"))
    write_history(tmp_path / "s", rows)
    out = tmp_path / "c.png"
    assert cli.main(["plot", "--state-dir", str(tmp_path / "s"), "--out", str(out),
                     "--width", "640"]) == 0
    assert png_size(out) == (640, 720)
    fig = render(rows, width=640)
    loss_ax, acc_ax = fig.axes
    (points,) = lines_of(loss_ax, EVAL_COLOR)
    assert list(points.get_xdata()) == [0, 200, 400, 600, 800]
    assert points.get_linestyle() == "None"  # eval losses are dots
    (acc,) = lines_of(acc_ax, ACC_COLOR)
    assert list(acc.get_ydata()) == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    # The accuracy panel is below the loss panel and shares its x axis.
    assert acc_ax.get_position().y1 < loss_ax.get_position().y0
    assert acc_ax.get_shared_x_axes().joined(acc_ax, loss_ax)


def test_bench_curves_have_one_line_per_arm_in_both_panels() -> None:
    curves = {name: [{"seconds": s, "node_steps": 3 * s, "accuracy": 0.5 + s / 100}
                     for s in range(10)] for name in ("seedfl_3", "mezo", "adamw")}
    curves["mezo"].append({"seconds": 11, "node_steps": 33, "accuracy": None})
    fig = render_curves(curves)
    for ax in fig.axes:
        assert [ln.get_label() for ln in ax.get_lines()] == ["seedfl_3", "mezo", "adamw"]
    assert len(fig.axes[0].get_lines()[1].get_xdata()) == 10  # the None point is left out
    top, bottom = fig.axes  # seconds and node-steps: separate x axes
    assert not top.get_shared_x_axes().joined(top, bottom)
    assert bottom.get_xlim()[1] > 2.5 * top.get_xlim()[1]


def test_plot_without_history_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    assert cli.main(["plot", "--state-dir", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "history.jsonl" in capsys.readouterr().err
    write_history(tmp_path, [train(0, None)])
    assert cli.main(["plot", "--state-dir", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "no loss values" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


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
