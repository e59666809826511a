"""Smoke runs of the benchmarks that must keep working: values, not timings."""

from __future__ import annotations

import math
from typing import Any

import pytest

from seedfl.bench.learning import NODES, POOL_SIZE, bench_learning
from seedfl.bench.runner import BENCHES

ARMS = ("single", "swarm_update", "swarm_pool_uniform", "swarm_pool_importance")


def test_runner_lists_every_bench() -> None:
    assert set(BENCHES) == {"replay", "step", "memory", "wire", "pool", "catchup", "learning"}


@pytest.fixture(scope="module")
def quick_learning() -> dict[str, Any]:
    return bench_learning(quick=True, steps=6, holdout=48)


def test_learning_quick_reports_every_arm_with_valid_accuracies(
        quick_learning: dict[str, Any]) -> None:
    r = quick_learning
    assert r["quick"] is True and r["model"] == "seedfl:tiny"
    assert r["nodes"] == NODES == 3 and r["steps_per_node"] == 6 and r["held_out"] == 48
    assert r["pool_size"] == POOL_SIZE and "staleness" in r["simulation"]
    assert set(r["arms"]) == set(ARMS)
    assert 0.0 <= r["before"]["accuracy"] <= 1.0 and math.isfinite(r["before"]["loss"])
    for name in ARMS:
        arm = r["arms"][name]
        assert 0.0 <= arm["accuracy"] <= 1.0
        assert math.isfinite(arm["loss"]) and arm["loss"] > 0
        assert arm["accuracy_gain"] == pytest.approx(arm["accuracy"] - r["before"]["accuracy"])
        assert arm["loss_drop"] == pytest.approx(r["before"]["loss"] - arm["loss"])
        # Every replica applied the same updates: equal up to float rounding.
        assert arm["replica_projection_spread"] <= 1e-4
    assert "distinct_slots" not in r["arms"]["swarm_update"]
    assert 0 < r["arms"]["swarm_pool_uniform"]["distinct_slots"] <= 3 * 6


def test_learning_quick_swarm_applies_three_times_the_updates(
        quick_learning: dict[str, Any]) -> None:
    arms = quick_learning["arms"]
    assert arms["single"]["nodes"] == 1 and arms["single"]["updates_applied"] == 6
    for name in ARMS[1:]:
        assert arms[name]["nodes"] == 3 and arms[name]["own_steps_per_node"] == 6
        assert arms[name]["updates_applied"] == 3 * arms["single"]["updates_applied"]


@pytest.mark.parametrize("key, gain", [("accuracy_gain_ratios", "accuracy_gain"),
                                       ("loss_drop_ratios", "loss_drop")])
def test_learning_quick_ratios_follow_from_the_gains(quick_learning: dict[str, Any], key: str,
                                                     gain: str) -> None:
    g = {name: arm[gain] for name, arm in quick_learning["arms"].items()}
    pairs = {"swarm_vs_single": ("swarm_update", "single"),
             "pool_uniform_vs_update": ("swarm_pool_uniform", "swarm_update"),
             "pool_importance_vs_update": ("swarm_pool_importance", "swarm_update")}
    ratios = quick_learning[key]
    assert set(ratios) == set(pairs)
    for name, (num, den) in pairs.items():
        if g[den] > 0:
            assert ratios[name] == pytest.approx(g[num] / g[den])
        else:
            assert ratios[name] is None


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
