"""Mismatched configs and wrong secrets are refused, with the difference named on both sides."""

from __future__ import annotations

from pathlib import Path

import pytest
from nodekit import TINY_CONFIG, NodeProc, wait_for

pytestmark = pytest.mark.timeout(300)


def _pair(tmp_path: Path, cfg_b: str, extra_a: list[str], extra_b: list[str]) -> tuple[str, str]:
    a_cfg, b_cfg = tmp_path / "a.toml", tmp_path / "b.toml"
    a_cfg.write_text(TINY_CONFIG)
    b_cfg.write_text(cfg_b)
    a = NodeProc(tmp_path / "a", a_cfg, None, [], extra=extra_a)
    b = None
    try:
        b = NodeProc(tmp_path / "b", b_cfg, None, [a.address()], extra=extra_b)
        b.address()

        def both_logged() -> bool:
            return "refused" in a.log() and "refused" in b.log()

        wait_for(both_logged, 60, "both sides to log the refusal")
        assert all(p["state"] != "alive" for p in a.status()["peers"])
        return a.log(), b.log()
    finally:
        for n in (a, b):
            if n is not None:
                n.terminate()
                n.wait(timeout=20)
                n.kill()


def test_different_config_is_refused_naming_it(tmp_path: Path) -> None:
    a_log, b_log = _pair(tmp_path, TINY_CONFIG.replace("lr = 0.001", "lr = 0.002"), [], [])
    assert "config fingerprint differs" in a_log
    assert "config fingerprint differs" in b_log


def test_wrong_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s1").write_text("alpha-secret")
    (tmp_path / "s2").write_text("beta-secret")
    a_log, b_log = _pair(tmp_path, TINY_CONFIG, ["--secret-file", str(tmp_path / "s1")],
                         ["--secret-file", str(tmp_path / "s2")])
    assert "proof invalid" in a_log
    assert "proof invalid" in b_log
