"""The replay bench reports fused replay per backlog beside one-at-a-time: values, not timings."""

from __future__ import annotations

from seedfl.bench.replay import bench_replay
from seedfl.bench.table import _replay


def test_replay_bench_reports_each_backlog_as_rates_and_ratios() -> None:
    r = bench_replay(n_params=300_000, repeats=1, threads=[1], backlogs=(1, 4))
    assert r["n_params"] == 300_000 and r["threads"] == 1  # the headline says its threads
    one = r["by_threads"]["1"]
    assert set(one["fused"]) == {"1", "4"}
    for k, f in one["fused"].items():
        assert f["backlog"] == int(k) and f["seconds"] > 0
        assert f["params_per_s_per_update"] == r["n_params"] * int(k) / f["seconds"]
        assert f["vs_one_at_a_time"] == f["params_per_s_per_update"] / one["seedfl"]["params_per_s"]
        assert f["vs_plain_add"] == (f["params_per_s_per_update"]
                                     / one["plain_add"]["params_per_s"])
    row = _replay({"replay": r})[0]
    assert "backlog 1/4:" in row and "0.3 M params" in row and "≥ 3× at backlog 16" in row
    assert f"{one['fused']['4']['vs_one_at_a_time']:.2f}×**" in row
