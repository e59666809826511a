"""Smoke runs of the benchmarks that must keep working: values, not timings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from seedfl.bench.learning import CURVE_POINTS, MEZO_LR_FACTORS, NODES, bench_learning
from seedfl.bench.runner import BENCHES

ARMS = ("seedfl_1", "seedfl_3", "mezo", "adamw")


def test_runner_lists_every_bench() -> None:
    assert set(BENCHES) == {"replay", "step", "memory", "wire", "pool", "catchup", "learning",
                            "scale"}


@pytest.fixture(scope="module")
def quick_learning(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    png = tmp_path_factory.mktemp("learning") / "curves.png"
    return bench_learning(quick=True, steps=10, holdout=48, png=png)


def test_learning_quick_reports_four_arms_with_curves(quick_learning: dict[str, Any]) -> None:
    r = quick_learning
    assert r["quick"] is True and r["model"] == "seedfl:tiny"
    assert r["nodes"] == NODES == 3 and r["steps_per_node"] == 10 and r["held_out"] == 48
    assert "staleness" in r["simulation"] and "parallel" in r["simulation"]
    assert set(r["arms"]) == set(ARMS)
    for name in ARMS:
        curve = r["arms"][name]["curve"]
        assert curve[0]["own_steps"] == 0 and curve[0]["seconds"] == 0.0
        assert curve[-1]["own_steps"] == 10 and len(curve) == min(CURVE_POINTS, 10) + 1
        assert all(0.0 <= p["accuracy"] <= 1.0 and math.isfinite(p["loss"]) for p in curve)
        secs = [p["seconds"] for p in curve]
        assert secs == sorted(secs) and secs[-1] > 0
        assert r["final_accuracy"][name] == curve[-1]["accuracy"]
    # Every arm starts from the same θ₀: the same first point.
    assert len({r["arms"][n]["curve"][0]["loss"] for n in ARMS}) == 1
    assert r["arms"]["seedfl_3"]["curve"][-1]["node_steps"] == 3 * 10
    assert r["arms"]["seedfl_3"]["updates_applied"] == 3 * r["arms"]["seedfl_1"]["updates_applied"]
    assert r["arms"]["seedfl_3"]["replica_projection_spread"] <= 1e-4
    assert len(r["mezo_lr_sweep"]) == len(MEZO_LR_FACTORS)
    assert r["arms"]["mezo"]["scale"] == "none" and r["arms"]["mezo"]["perturbation"] == "gaussian"
    assert r["final_accuracy"]["mezo"] == max(r["mezo_lr_sweep"].values())


def test_learning_quick_draws_the_png(quick_learning: dict[str, Any]) -> None:
    data = Path(quick_learning["png"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_step_quick_reports_both_selections_with_positive_ratios() -> None:
    from seedfl.bench.models import bench_config
    from seedfl.bench.step import bench_step, top_layers_selection

    cfg = bench_config(quick=True)
    assert top_layers_selection(cfg, quick=True) == (
        "model.layers.0.*", "model.layers.1.*", "model.norm.*")
    r = bench_step(cfg, quick=True, repeats=1)
    assert set(r["selections"]) == {"all", "top2_layers_norm"}
    for name, row in r["selections"].items():
        for key in ("seedfl_step_s", "mezo_step_s", "mezo_over_seedfl", "trainable"):
            assert key in row, (name, key)
        assert row["seedfl_step_s"] > 0 and row["mezo_step_s"] > 0
        assert row["mezo_over_seedfl"] == pytest.approx(row["mezo_step_s"] / row["seedfl_step_s"])
        assert math.isfinite(row["mezo_over_seedfl"]) and row["mezo_over_seedfl"] > 0
    top = r["selections"]["top2_layers_norm"]
    assert 0 < top["trainable_params"] < r["selections"]["all"]["trainable_params"]
    assert r["seedfl_step_s"] == r["selections"]["all"]["seedfl_step_s"]  # README keys stay
