"""Shared by the deploy tests: where the files are, and the real CLI parser, made strict."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest

from seedfl.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PORT = 7440
STATE_DIR = "/var/lib/seedfl"


def strict_parser() -> argparse.ArgumentParser:
    """The real parser with abbreviations off: ``--list`` must not pass as ``--listen``,
    or a flag added later could silently change what a deployed command means."""
    parser = build_parser()
    todo = [parser]
    while todo:
        p = todo.pop()
        p.allow_abbrev = False
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return parser


def parse_run(argv: list[str]) -> argparse.Namespace:
    """Parse ``seedfl`` arguments with the real parser; fail with its message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = strict_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"seedfl rejects {argv}: {err.getvalue().strip()}")
    assert args.command == "run", argv
    return args


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])
