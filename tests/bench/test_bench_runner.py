"""The bench runner's honesty (issue 12): every report says on what machine,
with which versions, by which command and when it was made; each result says
what weights and data it measured on; ``--out`` writes it; a failing bench
makes the command exit non-zero without hiding the others."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from seedfl.bench import provenance, runner
from seedfl.bench.models import bench_bundle, bench_config, bench_examples


def _args(what: str, out: Path | None) -> argparse.Namespace:
    return argparse.Namespace(what=what, json=True, quick=True, steps=None, holdout=None,
                              out=str(out) if out else None, codec=None)


def _ok(quick: bool) -> dict[str, Any]:
    provenance.note("weights", "stand-in random")
    return {"ratio": 2.5}


def _broken(quick: bool) -> dict[str, Any]:
    raise RuntimeError("boom")


def test_report_has_provenance_notes_and_a_failing_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(runner, "BENCHES", {"ok": _ok, "broken": _broken, "plain": _ok})
    out = tmp_path / "results" / "all.json"
    code = runner.bench_command(_args("all", out), argv=["bench", "all", "--out", str(out)])
    assert code == runner.EXIT_BENCH_FAILED == 1
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert report["command"] == f"seedfl bench all --out {out}"
    assert report["date_utc"].endswith("Z") and report["date_utc"][:2] == "20"
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert report["machine"]["ram_bytes"] > 0
    v = report["versions"]
    assert v["python"] and v["torch"] and v["transformers"] and v["seedfl"]
    assert report["ok"]["ratio"] == 2.5 and report["ok"]["weights"] == "stand-in random"
    assert report["broken"]["error"] == "RuntimeError: boom"
    assert "weights" not in report["broken"]  # notes do not leak between benches


def test_progress_and_each_result_as_it_finishes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(runner, "BENCHES", {"a": _ok, "b": _ok})
    assert runner.bench_command(_args("all", None), argv=["bench", "all"]) == 0
    err = capsys.readouterr().err
    assert err.index("bench a (1/2) ...") < err.index("bench a done") < err.index("bench b (2/2)")


def test_models_say_what_they_measure_on() -> None:
    cfg = bench_config(quick=True)
    provenance.take_notes()
    bundle = bench_bundle(cfg, quick=True)
    bench_examples(cfg, bundle, 2)
    notes = provenance.take_notes()
    assert notes["weights"].startswith("random (tiny test model)")
    assert notes["data"].startswith("synthetic")
