"""The scale bench's report: values and the ratios it states, not timings."""

from __future__ import annotations

import pytest

from seedfl.bench.scale import bench_scale, sizes_up_to


def test_sizes_are_powers_of_ten_up_to_the_largest() -> None:
    assert sizes_up_to(1000) == (10, 100, 1000)
    assert sizes_up_to(300) == (10, 100, 300)
    assert sizes_up_to(10) == (10,)
    assert sizes_up_to(5) == (5,)
    with pytest.raises(ValueError):
        sizes_up_to(1)


def test_quick_scale_bench_reports_every_size_and_the_ratios() -> None:
    r = bench_scale((10, 40), quick=True)
    assert set(r["by_nodes"]) == {"10", "40"}
    for n, run in r["by_nodes"].items():
        assert run["nodes"] == int(n) and run["complete"], run
        assert run["updates"] >= 50 and run["tracked_missing"] == 0
        assert 0 < run["dissemination_p50_s"] <= run["dissemination_p99_s"]
        assert run["connections_per_node_max"] <= run["connections_bound"] == 8
        kinds = run["bytes_by_kind_per_update_per_node"]
        assert {"batch", "vector", "membership"} <= set(kinds)
        assert sum(kinds.values()) == pytest.approx(run["bytes_per_update_per_node"])
    small, large = r["by_nodes"]["10"], r["by_nodes"]["40"]
    assert r["p99_ratio_largest_to_smallest"] == (large["dissemination_p99_s"]
                                                  / small["dissemination_p99_s"])
    assert r["bytes_ratio_largest_to_smallest"] == (large["bytes_per_update_per_node"]
                                                    / small["bytes_per_update_per_node"])
    assert r["all_complete"] and r["connections_within_bound"]
