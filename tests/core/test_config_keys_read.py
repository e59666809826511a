"""Every swarm config key is read by some code (issue 12): a key that is parsed,
fingerprinted and documented but that nothing reads (``swarm.max_staleness``
once was) fails here. The check is textual: for each dataclass field of the
config, some module of seedfl/ other than the config itself must use
``.field`` as an attribute."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from seedfl.core.codecs import CodecConfig
from seedfl.core.config import SwarmConfig

ROOT = Path(__file__).resolve().parents[2] / "seedfl"
SKIP = {"config.py", "config_template.py"}


def _fields(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    default = cls()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        path = f"{prefix}{f.name}"
        value = getattr(default, f.name)
        nested = type(value) if dataclasses.is_dataclass(value) else None
        if f.name == "lora":
            from seedfl.core.config import LoraConfig
            nested = LoraConfig
        out.append((path, f.name))
        if nested is not None:
            out += _fields(nested, path + ".")
    return out


def test_every_config_key_is_read_somewhere() -> None:
    sources = "\n".join(p.read_text() for p in ROOT.rglob("*.py")
                        if p.name not in SKIP and "proto" not in p.parts)
    unread = [path for path, name in _fields(SwarmConfig)
              if not re.search(rf"\.{re.escape(name)}\b", sources)]
    assert unread == [], f"config keys no code reads: {unread}"


def test_the_walk_sees_every_section() -> None:
    paths = {p for p, _ in _fields(SwarmConfig)}
    assert {"swarm.max_staleness", "swarm.rate_cap", "zo.pool_sampling", "model.tiny.init_seed",
            "model.lora.target_modules"} <= paths
    assert {f"codec.{f.name}" for f in dataclasses.fields(CodecConfig)} <= paths
