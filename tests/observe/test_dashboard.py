"""deploy/grafana/seedfl.json queries only metrics a node exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_metrics import STATUS

from seedfl.observe.metrics import exported_names

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "seedfl.json"
_PROMQL_FUNCS = {"rate", "irate", "increase", "sum", "avg", "max", "min", "by", "label_values"}


def _queried(expr: str) -> set[str]:
    names = set(re.findall(r"\b(seedfl_[a-zA-Z0-9_]+)", expr))
    return names - _PROMQL_FUNCS


def test_every_queried_metric_is_exported() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) >= 10
    queried = set().union(*(_queried(e) for e in exprs))
    exported = exported_names(STATUS) | {"seedfl_divergence"}  # absent until measured
    assert queried <= exported, sorted(queried - exported)
    assert {"seedfl_loss_ema", "seedfl_applied_total", "seedfl_peers"} <= queried


def test_panels_have_unique_ids_and_a_datasource() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])
