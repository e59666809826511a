"""The README performance table is exactly what the committed result files say."""

from __future__ import annotations

import json
from pathlib import Path

from seedfl.bench.table import END, START, render

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_matches_the_result_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == render(ROOT / "bench" / "results"), \
        "README table is stale: run `python -m seedfl.bench.table`"


def test_every_result_file_names_its_command_machine_and_date() -> None:
    files = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data.get("command") and data.get("machine"), path
        assert data.get("date_utc") or data.get("date"), path
        # A failed bench writes its error; a failure is not a result to publish.
        assert not any(isinstance(v, dict) and "error" in v for v in data.values()), path
        assert f"bench/results/{path.name}" in render(ROOT / "bench" / "results"), \
            f"{path.name} has no row in the README table"
