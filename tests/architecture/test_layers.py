"""The layer contract (layers.py) holds for seedfl, and the check can fail."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from layers import find_cycles, violations

PACKAGE = Path(__file__).resolve().parents[2] / "seedfl"


def test_no_import_goes_up_or_sideways() -> None:
    assert violations(PACKAGE) == []


def test_no_import_cycles() -> None:
    assert find_cycles(PACKAGE) == []


def test_top_level_holds_only_init_main() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "seedfl"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "", "core/__init__.py": "", "node/__init__.py": "",
        "core/seeds.py": "def f():\n    from seedfl.node.runtime import X\n",
        "node/runtime.py": "from seedfl.core.seeds import f\nX = 1\n",
    })
    assert violations(root) == [
        "seedfl.core.seeds:2 imports seedfl.node.runtime (core is layer 0, node is layer 3)"]


def test_the_check_catches_a_sideways_import_and_a_cycle(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "", "training/__init__.py": "", "swarm/__init__.py": "",
        "training/a.py": "import seedfl.swarm.b\n",
        "swarm/b.py": "from seedfl.training.a import y\n",
    })
    assert len(violations(root)) == 2
    assert find_cycles(root) == [["seedfl.swarm.b", "seedfl.training.a"]]


def test_type_checking_imports_are_not_cycles(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "", "node/__init__.py": "",
        "node/a.py": "import seedfl.node.b\n",
        "node/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from seedfl.node.a import Z\n",
    })
    assert find_cycles(root) == [] and violations(root) == []
