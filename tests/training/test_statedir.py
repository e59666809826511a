"""The state directory keeps its identity and refuses another swarm's config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seedfl.core.config import parse_config
from seedfl.training.statedir import StateDir, StateDirError

_BASE = """\
[model]
name = "seedfl:tiny"
[task]
type = "causal_lm"
max_length = 16
[zo]
lr = {lr}
"""


def test_reopening_keeps_the_identity_and_bumps_the_incarnation(tmp_path: Path) -> None:
    cfg = parse_config(_BASE.format(lr="1e-4"))
    one = StateDir(tmp_path / "n")
    first = one.open_node(cfg, "a")
    one.close()
    again = StateDir(tmp_path / "n").open_node(cfg, None)
    assert len(first[0]) == 16
    assert again[0] == first[0] and again[1] == "a"
    assert (first[2], again[2]) == (1, 2)
    assert StateDir(tmp_path / "n").config().fingerprint() == cfg.fingerprint()


def test_another_swarms_directory_is_refused_with_both_fingerprints(tmp_path: Path) -> None:
    ours = parse_config(_BASE.format(lr="1e-4"))
    theirs = parse_config(_BASE.format(lr="2e-4"))
    holder = StateDir(tmp_path / "n")
    holder.open_node(ours, "a")
    holder.close()
    before = sorted(p.name for p in (tmp_path / "n").rglob("*"))
    with pytest.raises(StateDirError) as err:
        StateDir(tmp_path / "n").open_node(theirs, "a")
    msg = str(err.value)
    assert "belongs to another swarm" in msg
    assert ours.short_fingerprint() in msg and theirs.short_fingerprint() in msg
    # Refusal leaves the directory exactly as it was.
    assert sorted(p.name for p in (tmp_path / "n").rglob("*")) == before
    assert StateDir(tmp_path / "n").config().fingerprint() == ours.fingerprint()


def test_a_plain_folder_is_not_a_state_directory(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(StateDirError, match="not a seedfl state directory"):
        StateDir(tmp_path / "x").open(None)


def test_a_second_node_on_one_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    cfg = parse_config(_BASE.format(lr="1e-4"))
    holder = StateDir(tmp_path / "n")
    holder.open_node(cfg, "a")
    with pytest.raises(StateDirError) as err:
        StateDir(tmp_path / "n").open_node(cfg, "b")
    assert f"pid {os.getpid()}" in str(err.value) and "--state-dir" in str(err.value)
    # The refused open changed nothing: the holder's incarnation is still 1.
    holder.close()
    assert StateDir(tmp_path / "n").open_node(cfg, None)[2] == 2


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    cfg = parse_config(_BASE.format(lr="1e-4"))
    StateDir(tmp_path / "n").open_node(cfg, "a")  # create the directory, then let go
    code = (
        "import sys, time\n"
        "from seedfl.core.config import parse_config\n"
        "from seedfl.training.statedir import StateDir\n"
        "held = StateDir(sys.argv[1])\n"
        f"held.open_node(parse_config({_BASE.format(lr='1e-4')!r}), None)\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "n")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(StateDirError, match=f"pid {child.pid} "):
            StateDir(tmp_path / "n").open_node(cfg, None)
        child.kill()  # no clean-up runs: the kernel drops the lock
        child.wait(timeout=10)
        assert StateDir(tmp_path / "n").open_node(cfg, None)[2] == 3
    finally:
        child.kill()
        child.wait(timeout=10)
