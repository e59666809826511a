"""The README performance table, rendered from the committed result files.

Every figure in the table comes from a JSON file under ``bench/results/`` that
a command wrote (``seedfl bench NAME --out bench/results/NAME.json``, or the
demo's record); a benchmark without a file has no row. ``render`` returns the
Markdown between the README's ``bench-table`` markers, ``python -m
seedfl.bench.table`` rewrites that block, and tests/bench/test_readme_table.py
fails when the README and the files disagree. This module reads files and
formats text; it measures nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["END", "START", "render", "rewrite"]

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _when(d: dict[str, Any]) -> str:
    date = str(d.get("date_utc") or d.get("date") or "?")[:10]
    m = d.get("machine")
    if isinstance(m, dict):
        where = f"{m.get('cores', '?')} cores, {m.get('cpu', '?')}"
    else:
        where = str(m or "?")
    return f"{date}; {where}"


def _step(d: dict[str, Any]) -> list[str]:
    rows = []
    sel = d["step"]["selections"]
    a = sel["all"]
    rows.append(f"| `step` — ZO step, {a['model_params'] / 1e6:.1f} M params all trainable, "
                f"batch {a['batch'][0]}×{a['batch'][1]} | seedfl {a['seedfl_step_s']:.2f} s vs "
                f"MeZO-style {a['mezo_step_s']:.2f} s: **{a['mezo_over_seedfl']:.2f}×** | — |")
    t = sel["top2_layers_norm"]
    rows.append(f"| `step` — top-2 layers + final norm ({t['trainable_params'] / 1e6:.1f} M "
                f"trainable), same batch | seedfl {t['seedfl_step_s']:.3f} s with the frozen "
                f"prefix cached vs MeZO-style {t['mezo_step_s']:.2f} s: "
                f"**{t['mezo_over_seedfl']:.1f}×** (first, uncached step "
                f"{t['mezo_over_seedfl_cold']:.2f}×) | ≥ 5× |")
    return rows


def _demo(d: dict[str, Any]) -> list[str]:
    r = d["runs"][-1]
    gain = 100 * (r["accuracy_after"] - r["accuracy_before"])
    zs = ", ".join(_pct(v) for v in sorted(r["zero_shot"].values(), reverse=True))
    return [f"| `make demo` — {r['nodes']} nodes × {r['steps_per_node']} steps, "
            f"{r['heldout']} held-out sentences | best zero-shot prompt "
            f"{_pct(r['accuracy_before'])} (the three templates: {zs}) → "
            f"**{_pct(r['accuracy_after'])}** (+{gain:.2f} "
            f"points; exported model {_pct(r['accuracy_after_reloaded'])}), "
            f"**{r['minutes']:.1f} min** | ≥ best prompt + 5 points, ≤ 15 min |"]


def _learning(d: dict[str, Any]) -> list[str]:
    L = d.get("learning", d)
    final = L["final_accuracy"]
    secs = {name: arm["curve"][-1]["seconds"] for name, arm in L["arms"].items()}
    arms = "; ".join(f"{name} **{_pct(final[name])}** in {secs[name]:.0f} s"
                     for name in ("seedfl_1", "seedfl_3", "mezo", "adamw") if name in final)
    return [f"| `learning --steps {L['steps_per_node']} --holdout {L['held_out']}` — "
            f"{L['task']}, trainable {', '.join(L['trainable'])} | start "
            f"{_pct(L['before']['accuracy'])}; {arms} (seedfl_3: 3 nodes simulated in-process, "
            f"synchronous rounds, seconds = the slowest node per round) | honest comparison |"]


def _wire(d: dict[str, Any]) -> list[str]:
    rows = []
    for codec, runs in d["wire"]["by_codec"].items():
        for run in runs.values():
            rows.append(
                f"| `wire --codec {codec}` — 3 nodes on loopback, "
                f"{run['steps_per_s_per_node']:g} steps/s each asked "
                f"({run['updates'] / run['window_s'] / run['nodes']:.1f} reached), "
                f"{run['window_s']:g} s | "
                f"payload {run['payload_bytes_per_update']:.3g} B/update; per update per peer: "
                f"**{run['tcp_payload_bytes_per_update_per_peer']:.1f} B TCP payload** "
                f"(kernel, `ss`) vs {run['gossip_bytes_per_update_per_peer']:.1f} B counted by "
                f"the nodes ({run['tcp_payload_over_counted']:.2f}×) | "
                f"≤ {16 if run['steps_per_s_per_node'] <= 5 else 4} B TCP payload |")
    return rows


def _replay(d: dict[str, Any]) -> list[str]:
    r = d.get("replay", d)
    parts = []
    for threads, run in sorted(r["by_threads"].items(), key=lambda kv: -int(kv[0])):
        fused = run["fused"]
        ks = sorted(fused, key=int)
        rates = "/".join(f"{fused[k]['params_per_s_per_update'] / 1e9:.2f}" for k in ks)
        ratios = "/".join(f"{fused[k]['vs_one_at_a_time']:.2f}" for k in ks)
        parts.append(f"{threads} thread{'s' if threads != '1' else ''}: one at a time "
                     f"{run['seedfl']['params_per_s'] / 1e9:.2f} G params/s (plain `add_` "
                     f"{run['plain_add']['params_per_s'] / 1e9:.2f}); fused, backlog "
                     f"{'/'.join(ks)}: {rates} per update = **{ratios}×**")
    return [f"| `replay` — apply a backlog of updates, {r['n_params'] / 1e6:.1f} M params "
            f"(SmolLM2-135M shapes), rademacher, fused pass vs one pass per update | "
            f"{'; '.join(parts)} | ≥ 3× at backlog 16 |"]


def _scale(d: dict[str, Any]) -> list[str]:
    r = d.get("scale", d)
    runs = sorted(r["by_nodes"].items(), key=lambda kv: int(kv[0]))
    ns = "/".join(n for n, _ in runs)
    p99 = "/".join(f"{run['dissemination_p99_s']:.1f}" for _, run in runs)
    p50 = "/".join(f"{run['dissemination_p50_s']:.1f}" for _, run in runs)
    size = "/".join(f"{run['bytes_per_update_per_node']:.0f}" for _, run in runs)
    links = "/".join(str(run["connections_per_node_max"]) for _, run in runs)
    bound = max(run["connections_bound"] for _, run in runs)
    done = ("every update reached every live node" if r["all_complete"]
            else "**some update did not reach every live node**")
    return [f"| `scale` — simulated swarm of N = {ns} nodes (in-memory network, manual clock), "
            f"churn, 5% frame loss (docs/SCALE.md) | {done}; dissemination p50 {p50} s, "
            f"p99 {p99} s (**{r['p99_ratio_largest_to_smallest']:.2f}×** N = {runs[0][0]}); "
            f"bytes per update per node {size} (**{r['bytes_ratio_largest_to_smallest']:.2f}×**); "
            f"most connections at a node {links} of at most {bound} | p99 ≤ 10×, bytes ≤ 2× "
            f"the smallest swarm's; connections ≤ the view bound |"]


_RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "step.json": _step, "replay.json": _replay, "wire.json": _wire, "demo.json": _demo,
    "learning.json": _learning, "scale.json": _scale}


def render(results: Path) -> str:
    """The table for every known result file present under ``results``."""
    lines = ["| benchmark | result | target | measured |", "|---|---|---|---|"]
    for name, fn in _RENDERERS.items():
        path = results / name
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        for row in fn(data):
            lines.append(f"{row} {_when(data)} (`bench/results/{name}`) |")
    return "\n".join(lines)


def rewrite(readme: Path, results: Path) -> bool:
    """Replace the README's table block; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"{readme}: no {START} … {END} block")
    new = f"{head}{START}\n{render(results)}\n{END}{tail}"
    readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    changed = rewrite(root / "README.md", root / "bench" / "results")
    print("README table rewritten" if changed else "README table already matches")
