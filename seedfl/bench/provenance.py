"""What every bench result says about how it was made (issue 12, numbers anyone
can check): the machine, the versions, the command line, the UTC date, and
what the bench actually measured on (real or stand-in weights, real or
synthetic data).

``describe(argv)`` returns the run-wide part once; ``note(key, value)`` is how a
bench (or the model/data helpers it calls) records what it used, e.g.
``note("weights", "stand-in random (SmolLM2-135M shape)")``; the runner calls
``take_notes()`` after each bench and puts them in that bench's result. A
stand-in also prints a warning on stderr, so nobody reads a number made on
random weights as one made on the real model.

This module knows nothing about what any bench measures.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_NOTES: dict[str, str] = {}


def note(key: str, value: str, warn: bool = False) -> None:
    """Record what this bench used; ``warn`` also says it on stderr."""
    _NOTES[key] = value
    if warn:
        print(f"seedfl bench: warning: {key}: {value}", file=sys.stderr, flush=True)


def take_notes() -> dict[str, str]:
    notes = dict(_NOTES)
    _NOTES.clear()
    return notes


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # an installed wheel: the seedfl version says which code ran
    return out + ("-dirty" if dirty else "")


def describe(argv: list[str]) -> dict[str, Any]:
    import torch

    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["seedfl", *argv]),
        "machine": {
            "cpu": _cpu_model(), "cores": os.cpu_count(), "ram_bytes": _ram_bytes(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": _version("transformers"), "seedfl": _version("seedfl"),
            "git_commit": _git_commit(),
        },
    }
