"""``seedfl plot``: learning curves from ``<state>/history.jsonl`` as a PNG.

The top panel shows the training loss EMA (blue line) against updates
applied, with ``seedfl eval`` losses as orange dots; a second panel shows
eval accuracy (green) when any eval row has one. Both panels share the x
axis. The image is drawn by a small pure-Python rasteriser (RGB canvas,
thick lines, a 3x5 bitmap font for ticks and titles) and encoded with zlib,
so plotting needs no dependency beyond the standard library.
"""

from __future__ import annotations

import argparse
import itertools
import math
import struct
import zlib
from pathlib import Path
from typing import Any

from seedfl.core.errors import UsageError
from seedfl.observe.history import HISTORY_FILE, read_rows

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
INK: Color = (40, 40, 40)
GRID: Color = (225, 225, 225)
LOSS_COLOR: Color = (31, 119, 180)
EVAL_COLOR: Color = (255, 127, 14)
ACC_COLOR: Color = (44, 160, 44)

# 3x5 glyphs, rows top to bottom; enough for tick labels and panel titles.
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001010010", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "+": "000010111010000", " ": "000000000000000", "A": "010101111101101",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111",
    "I": "111010010010111", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "O": "010101101101010", "P": "110101110100100",
    "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "Y": "101101010010010",
    "B": "110101110101110", "F": "111100110100100", "G": "011100101101011",
    "H": "101101111101101", "N": "110101101101101", "W": "101101111111101",
    "X": "101101010101101", "Z": "111001010100111", "_": "000000000000111",
    "(": "010100100100010", ")": "010001001001010", "/": "001001010100100",
}


class Canvas:
    """An RGB raster with (0, 0) at the top left."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, c: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i:i + 3] = bytes(c)

    def get(self, x: int, y: int) -> Color:
        i = 3 * (y * self.width + x)
        r, g, b = self.pixels[i:i + 3]
        return r, g, b

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        """Fill the inclusive box [x0, x1] x [y0, y1]."""
        for y in range(max(0, y0), min(self.height, y1 + 1)):
            for x in range(max(0, x0), min(self.width, x1 + 1)):
                self.set(x, y, c)

    def line(self, x0: int, y0: int, x1: int, y1: int, c: Color, width: int = 1) -> None:
        """Bresenham, stamping a width x width square at every step."""
        lo = -(width // 2)
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.rect(x0 + lo, y0 + lo, x0 + lo + width - 1, y0 + lo + width - 1, c)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err, x0 = err + dy, x0 + sx
            if e2 <= dx:
                err, y0 = err + dx, y0 + sy

    def dot(self, x: int, y: int, r: int, c: Color) -> None:
        for yy in range(y - r, y + r + 1):
            for xx in range(x - r, x + r + 1):
                if (xx - x) ** 2 + (yy - y) ** 2 <= r * r:
                    self.set(xx, yy, c)

    def text(self, x: int, y: int, s: str, c: Color, scale: int = 2) -> int:
        """Draw ``s`` with its top-left at (x, y); return the width drawn."""
        for k, ch in enumerate(s.upper()):
            glyph = _FONT.get(ch, _FONT[" "])
            gx = x + k * 4 * scale
            for bit, on in enumerate(glyph):
                if on == "1":
                    px, py = gx + (bit % 3) * scale, y + (bit // 3) * scale
                    self.rect(px, py, px + scale - 1, py + scale - 1, c)
        return text_width(s, scale)

    def png(self) -> bytes:
        """The canvas as an 8-bit RGB PNG (filter 0 on every row)."""
        stride = 3 * self.width
        raw = b"".join(b"\x00" + bytes(self.pixels[y * stride:(y + 1) * stride])
                       for y in range(self.height))

        def chunk(tag: bytes, data: bytes) -> bytes:
            body = tag + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def text_width(s: str, scale: int = 2) -> int:
    return max(0, 4 * scale * len(s) - scale)


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not hi > lo:
        lo, hi = lo - 1.0, hi + 1.0
    raw = (hi - lo) / max(1, target)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round((first + i) * step, 12) for i in range(int((hi - lo) / step + 1e-9) + 1)
            if (first + i) * step <= hi + 1e-9 * step]


def tick_label(v: float, step: float) -> str:
    if abs(v) >= 1e7 or (0 < step < 1e-4):
        return f"{v:.1E}"
    if abs(v) >= 10000 and step >= 1000:
        return f"{v / 1000:g}K"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{v:.{decimals}f}"


def _span(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        return lo - max(1.0, abs(lo)) * 0.1, hi + max(1.0, abs(hi)) * 0.1
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


class Panel:
    """One plot area in canvas pixels and its data ranges."""

    def __init__(self, box: tuple[int, int, int, int], xr: tuple[float, float],
                 yr: tuple[float, float]) -> None:
        self.x0, self.y0, self.x1, self.y1 = box
        self.xr, self.yr = xr, yr

    def px(self, x: float, y: float) -> tuple[int, int]:
        fx = (x - self.xr[0]) / (self.xr[1] - self.xr[0])
        fy = (y - self.yr[0]) / (self.yr[1] - self.yr[0])
        return (round(self.x0 + fx * (self.x1 - self.x0)),
                round(self.y1 - fy * (self.y1 - self.y0)))

    def axes(self, cv: Canvas, title: str, legend: list[tuple[str, Color]],
             xlabels: bool) -> None:
        yt, xt = nice_ticks(*self.yr), nice_ticks(*self.xr)
        ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0
        xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
        for v in yt:
            _, y = self.px(self.xr[0], v)
            cv.line(self.x0, y, self.x1, y, GRID)
            label = tick_label(v, ystep)
            cv.text(self.x0 - 8 - text_width(label), y - 5, label, INK)
        for v in xt:
            x, _ = self.px(v, self.yr[0])
            cv.line(x, self.y0, x, self.y1, GRID)
            cv.line(x, self.y1, x, self.y1 + 5, INK)
            if xlabels:
                label = tick_label(v, xstep)
                cv.text(x - text_width(label) // 2, self.y1 + 10, label, INK)
        for x0, y0, x1, y1 in ((self.x0, self.y0, self.x1, self.y0),
                               (self.x0, self.y1, self.x1, self.y1),
                               (self.x0, self.y0, self.x0, self.y1),
                               (self.x1, self.y0, self.x1, self.y1)):
            cv.line(x0, y0, x1, y1, INK)
        x = self.x0 + cv.text(self.x0, self.y0 - 20, title, INK) + 30
        for name, color in legend:  # in the top margin, clear of the curves
            cv.rect(x, self.y0 - 20, x + 9, self.y0 - 11, color)
            x += 16 + cv.text(x + 16, self.y0 - 20, name, INK) + 24


def _series(rows: list[dict[str, Any]], kind: str, key: str) -> list[tuple[float, float]]:
    pts = [(r.get("applied_total"), r.get(key)) for r in rows if r.get("kind", "train") == kind]
    return [(float(x), float(y)) for x, y in pts  # a diverged NaN loss is not drawable
            if isinstance(x, int | float) and isinstance(y, int | float)
            and math.isfinite(x) and math.isfinite(y)]


def render(rows: list[dict[str, Any]], width: int = 900, height: int = 0) -> Canvas:
    """Draw the curves of history ``rows``; raises UsageError when there is nothing to draw."""
    loss, ev_loss = _series(rows, "train", "loss_ema"), _series(rows, "eval", "loss")
    acc = _series(rows, "eval", "accuracy")
    if not loss and not ev_loss:
        raise UsageError("the history has no loss values yet; let the node train a while")
    height = height or (720 if acc else 420)
    cv = Canvas(width, height)
    xr = _span([x for x, _ in loss + ev_loss + acc], pad=0.02)
    left, right, top, gap, bottom = 90, width - 30, 40, 50, height - 60
    split = (top + bottom - gap) // 2 if acc else bottom
    top_panel = Panel((left, top, right, split), xr, _span([y for _, y in loss + ev_loss]))
    legend = [("LOSS EMA", LOSS_COLOR)] + ([("EVAL LOSS", EVAL_COLOR)] if ev_loss else [])
    top_panel.axes(cv, "LOSS", legend, xlabels=not acc)
    _draw(cv, top_panel, loss, LOSS_COLOR, line=True)
    _draw(cv, top_panel, ev_loss, EVAL_COLOR, line=False)
    if acc:
        lo, hi = _span([y for _, y in acc])
        acc_panel = Panel((left, split + gap, right, bottom), xr, (max(0.0, lo), min(1.0, hi))
                          if hi - lo > 0.02 else (lo, hi))
        acc_panel.axes(cv, "ACCURACY", [("EVAL", ACC_COLOR)], xlabels=True)
        _draw(cv, acc_panel, acc, ACC_COLOR, line=True)
    label = "UPDATES APPLIED"
    cv.text((left + right - text_width(label)) // 2, height - 24, label, INK)
    return cv


def _draw(cv: Canvas, panel: Panel, pts: list[tuple[float, float]], color: Color,
          line: bool) -> None:
    xy = [panel.px(x, y) for x, y in pts]
    if line:
        for (ax, ay), (bx, by) in itertools.pairwise(xy):
            cv.line(ax, ay, bx, by, color, width=2)
    if not line or len(xy) < 40:
        for x, y in xy:
            cv.dot(x, y, 3, color)


def plot_command(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    path = state / HISTORY_FILE
    if not path.exists():
        raise UsageError(f"no {HISTORY_FILE} in {state}; run a node with --state-dir {state}")
    rows = read_rows(path)
    cv = render(rows, width=args.width, height=args.height)
    Path(args.out).write_bytes(cv.png())
    print(f"wrote {args.out} ({cv.width}x{cv.height}, {len(rows)} history rows)")
    return 0


ARM_COLORS: tuple[Color, ...] = (LOSS_COLOR, ACC_COLOR, EVAL_COLOR, (148, 103, 189),
                                 (140, 86, 75))


def render_curves(curves: dict[str, list[dict[str, Any]]], width: int = 900) -> Canvas:
    """Accuracy of several runs against wall-clock seconds (top) and node-steps (bottom).

    ``curves`` maps a run's name to points with ``seconds``, ``node_steps`` and
    ``accuracy`` (the learning bench's arms).
    """
    series = {name: [p for p in pts if isinstance(p.get("accuracy"), int | float)]
              for name, pts in curves.items()}
    if not any(series.values()):
        raise UsageError("no accuracy points to draw")
    height = 760
    cv = Canvas(width, height)
    left, right, top, gap, bottom = 90, width - 30, 40, 80, height - 60
    split = (top + bottom - gap) // 2
    acc = [float(p["accuracy"]) for pts in series.values() for p in pts]
    yr = _span(acc)
    legend = [(name.upper(), ARM_COLORS[i % len(ARM_COLORS)]) for i, name in enumerate(series)]
    for box, key, label in (((left, top, right, split), "seconds", "WALL-CLOCK SECONDS"),
                            ((left, split + gap, right, bottom), "node_steps", "NODE STEPS")):
        xs = [float(p[key]) for pts in series.values() for p in pts]
        panel = Panel(box, _span(xs, pad=0.02), yr)
        panel.axes(cv, "ACCURACY", legend, xlabels=True)
        for i, pts in enumerate(series.values()):
            _draw(cv, panel, [(float(p[key]), float(p["accuracy"])) for p in pts],
                  ARM_COLORS[i % len(ARM_COLORS)], line=True)
        cv.text((left + right - text_width(label)) // 2, box[3] + 30, label, INK)
    return cv

