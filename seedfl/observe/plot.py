"""``seedfl plot``: learning curves from ``<state>/history.jsonl``, drawn by matplotlib.

The top panel shows the training loss EMA (a line) against updates applied,
with ``seedfl eval`` losses as dots; a second panel shows eval accuracy when
any eval row has one. Both share the x axis. ``render_curves`` draws the
learning bench's arms (accuracy against wall-clock seconds and node-steps).

matplotlib is an optional extra (``pip install 'seedfl[plot]'``; ``make``
installs it): a node never needs it, and without it ``seedfl plot`` says how
to get it. The figures use the Agg backend, so no display is needed. This
module does not know how the history is written (``history.py``).
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seedfl.core.errors import UsageError
from seedfl.observe.history import HISTORY_FILE, read_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ACC_COLOR", "EVAL_COLOR", "LOSS_COLOR", "plot_command", "render", "render_curves",
           "to_png"]

LOSS_COLOR = "#1f77b4"
EVAL_COLOR = "#ff7f0e"
ACC_COLOR = "#2ca02c"
ARM_COLORS = (LOSS_COLOR, ACC_COLOR, EVAL_COLOR, "#9467bd", "#8c564b")
DPI = 100


def _figure(width: int, height: int, panels: int,
            sharex: bool = True) -> tuple[Figure, list[Any]]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plotting needs matplotlib: pip install 'seedfl[plot]'") from None
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(panels, 1, sharex=sharex and panels > 1, squeeze=False)[:, 0]
    return fig, list(axes)


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, at exactly its pixel size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _series(rows: list[dict[str, Any]], kind: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        x, y = r.get("applied_total"), r.get(key)
        if r.get("kind", "train") != kind:
            continue
        # A diverged NaN loss or a row before the first step is not drawable.
        if isinstance(x, int | float) and isinstance(y, int | float) and \
                math.isfinite(x) and math.isfinite(y):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def render(rows: list[dict[str, Any]], width: int = 900, height: int = 0) -> Figure:
    """The curves of history ``rows``; raises UsageError when there is nothing to draw."""
    loss, ev_loss = _series(rows, "train", "loss_ema"), _series(rows, "eval", "loss")
    acc = _series(rows, "eval", "accuracy")
    if not loss[0] and not ev_loss[0]:
        raise UsageError("the history has no loss values yet; let the node train a while")
    fig, axes = _figure(width, height or (720 if acc[0] else 420), 2 if acc[0] else 1)
    top = axes[0]
    top.plot(*loss, color=LOSS_COLOR, linewidth=1.5, label="loss EMA")
    if ev_loss[0]:
        top.plot(*ev_loss, "o", color=EVAL_COLOR, label="eval loss")
    top.set_ylabel("loss")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    if acc[0]:
        bottom = axes[1]
        bottom.plot(*acc, "-o", color=ACC_COLOR, label="eval accuracy")
        bottom.set_ylabel("accuracy")
        bottom.legend(loc="lower right")
        bottom.grid(alpha=0.3)
    axes[-1].set_xlabel("updates applied")
    return fig


def render_curves(curves: dict[str, list[dict[str, Any]]], width: int = 900) -> Figure:
    """Accuracy of several runs against wall-clock seconds (top) and node-steps (bottom).

    ``curves`` maps a run's name to points with ``seconds``, ``node_steps`` and
    ``accuracy`` (the learning bench's arms).
    """
    series = {name: [p for p in pts if isinstance(p.get("accuracy"), int | float)]
              for name, pts in curves.items()}
    if not any(series.values()):
        raise UsageError("no accuracy points to draw")
    fig, axes = _figure(width, 760, 2, sharex=False)  # seconds above, steps below
    for ax, key, label in zip(axes, ("seconds", "node_steps"),
                              ("wall-clock seconds", "node steps"), strict=True):
        for i, (name, pts) in enumerate(series.items()):
            ax.plot([float(p[key]) for p in pts], [float(p["accuracy"]) for p in pts],
                    color=ARM_COLORS[i % len(ARM_COLORS)], linewidth=1.5, label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return fig


def plot_command(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    path = state / HISTORY_FILE
    if not path.exists():
        raise UsageError(f"no {HISTORY_FILE} in {state}; run a node with --state-dir {state}")
    rows = read_rows(path)
    fig = render(rows, width=args.width, height=args.height)
    Path(args.out).write_bytes(to_png(fig))
    w, h = (round(v * DPI) for v in fig.get_size_inches())
    print(f"wrote {args.out} ({w}x{h}, {len(rows)} history rows)")
    return 0
