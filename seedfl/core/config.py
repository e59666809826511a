"""The swarm config: TOML in, validated frozen dataclasses out, plus its fingerprint.

Every node of a swarm loads an identical config; its fingerprint (blake2b-32 of
the canonical JSON of the fully resolved config) is compared in the handshake
and its first 16 bytes are the swarm key that every seed is derived from.
Local-only settings (the path of the secret file, the frozen-prefix cache size)
are not fingerprinted.

Errors name the key and say what to do; they never carry a traceback to the
user (the CLI prints ``ConfigError`` messages and exits 2).

This module knows TOML and types, nothing about models or networks. The
commented template that ``seedfl init`` writes lives in ``config_template.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedfl.core.codecs import CodecConfig
from seedfl.core.errors import UserError
from seedfl.core.seeds import swarm_key_of


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the built-in random model ``seedfl:tiny`` (tests, smoke runs)."""

    vocab_size: int = 256
    hidden_size: int = 32
    intermediate_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    # 0 = as many key/value heads as attention heads (no grouped-query attention)
    num_key_value_heads: int = 0
    init_seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "seedfl:smollm2-135m"
    revision: str = ""
    dtype: str = "float32"
    gguf_file: str = ""
    trainable: tuple[str, ...] = ("*",)
    lora: LoraConfig | None = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass(frozen=True)
class TaskConfig:
    type: str = "classification"
    template: str = "Review: {text}\nSentiment:"
    text_field: str = "text"
    label_field: str = "label"
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    verbalizer: tuple[tuple[str, str], ...] = (("0", " negative"), ("1", " positive"))
    max_length: int = 64


@dataclass(frozen=True)
class ZOConfig:
    eps: float = 1e-3
    lr: float = 1e-4
    schedule: str = "constant"
    warmup: int = 0
    horizon: int = 0
    batch_size: int = 16
    perturbation: str = "rademacher"
    scale: str = "none"
    seeds: str = "update"
    pool_size: int = 4096
    pool_sampling: str = "uniform"
    # Local: MiB for the hidden states below the lowest trainable layer (prefix.py).
    prefix_cache_mb: float = 1024.0
    # How an origin scales its projected gradient by the live contributors N it
    # counts (itself included) before encoding: mean = 1/N, sqrt = 1/sqrt(N),
    # none = 1 (docs/LEARNING.md "Swarm size").
    swarm_scale: str = "none"


@dataclass(frozen=True)
class SwarmSection:
    name: str = "seedfl"
    secret_file: str = ""
    max_staleness: int = 0
    rate_cap: float = 50.0
    max_origins: int = 4096


@dataclass(frozen=True)
class TLSSection:
    """Local to each node (each has its own certificate), so not fingerprinted;
    a node with TLS and one without simply cannot connect."""

    cert: str = ""
    key: str = ""
    ca: str = ""
    mutual: bool = True


@dataclass(frozen=True)
class SwarmConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    zo: ZOConfig = field(default_factory=ZOConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    swarm: SwarmSection = field(default_factory=SwarmSection)
    tls: TLSSection = field(default_factory=TLSSection)

    def canonical(self) -> dict[str, Any]:
        """Everything that must agree across the swarm, as plain JSON values."""
        data = dataclasses.asdict(self)
        data["swarm"].pop("secret_file")
        data.pop("tls")  # paths to this node's own certificate and key
        data["zo"].pop("prefix_cache_mb")  # changes the speed, not the rule
        return data

    def fingerprint(self) -> bytes:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(blob.encode(), digest_size=32, person=b"seedfl/config/1").digest()

    def swarm_key(self) -> bytes:
        return swarm_key_of(self.fingerprint())

    def short_fingerprint(self) -> str:
        return self.fingerprint()[:4].hex()


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "float16", "bfloat16"),
    "task.type": ("classification", "completion", "causal_lm"),
    "zo.schedule": ("constant", "linear", "cosine"),
    "zo.perturbation": ("rademacher", "gaussian"),
    "zo.scale": ("none", "rms0", "act0"),
    "zo.seeds": ("update", "pool"),
    "zo.pool_sampling": ("uniform", "importance"),
    "zo.swarm_scale": ("none", "mean", "sqrt"),
    "codec.name": ("log8", "lin8", "sign1"),
}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check one TOML value against the type of the dataclass default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = True
    if not ok:
        kind = type(default).__name__
        raise ConfigError(f"{key}: expected a {kind}, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_CHOICES[key])}")
    return value


def _build(cls: Any, table: Any, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in known:
            where = f"[{prefix}]" if prefix else "the top level"
            raise ConfigError(
                f"{path}: unknown key; known keys in {where} are {', '.join(sorted(known))}"
            )
        default = getattr(defaults, key)
        if key == "verbalizer":
            if not isinstance(value, dict) or not value:
                raise ConfigError(f"{path}: expected a table label = \"word\"")
            if not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{path}: every verbalizer word must be a string")
            kwargs[key] = tuple((str(k), v) for k, v in value.items())
        elif key == "lora":
            kwargs[key] = _build(LoraConfig, value, path)
        elif dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, path)
        else:
            kwargs[key] = _coerce(path, value, default)
    return cls(**kwargs)


def _validate(cfg: SwarmConfig) -> None:
    zo, codec = cfg.zo, cfg.codec
    if not zo.eps > 0:
        raise ConfigError("zo.eps: must be > 0 (MeZO uses 1e-3)")
    if not zo.lr >= 0:
        raise ConfigError("zo.lr: must be >= 0")
    if zo.batch_size < 1:
        raise ConfigError("zo.batch_size: must be >= 1")
    if not (zo.prefix_cache_mb >= 0 and math.isfinite(zo.prefix_cache_mb)):
        raise ConfigError("zo.prefix_cache_mb: must be >= 0 MiB (0 turns the cache off)")
    if zo.seeds == "pool" and not 1 <= zo.pool_size <= 65536:
        raise ConfigError("zo.pool_size: must be in 1..65536 (a slot travels in 2 bytes)")
    if cfg.task.max_length < 4:
        raise ConfigError("task.max_length: must be >= 4 tokens")
    if codec.g_min <= 0 or codec.clip <= 0 or codec.levels_per_octave < 1:
        raise ConfigError("codec: g_min and clip must be > 0, levels_per_octave >= 1")
    if cfg.task.type == "classification":
        if len(cfg.task.verbalizer) < 2:
            raise ConfigError("task.verbalizer: a classification task needs >= 2 labels")
        if "{text}" not in cfg.task.template:
            raise ConfigError("task.template: must contain {text} where the input goes")
    if not cfg.model.name:
        raise ConfigError("model.name: missing; give a local path, a hub id or seedfl:tiny")
    if cfg.swarm.rate_cap <= 0:
        raise ConfigError("swarm.rate_cap: must be > 0 updates/s per origin")
    if cfg.swarm.max_origins < 2:
        raise ConfigError("swarm.max_origins: must be >= 2 (this node and one peer)")


def parse_config(text: str, source: str = "<config>") -> SwarmConfig:
    """Parse and validate TOML text. Raises ConfigError naming the bad key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    cfg: SwarmConfig = _build(SwarmConfig, raw, "")
    _validate(cfg)
    return cfg


def load_config(path: str | Path) -> SwarmConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config ({exc.strerror}); "
                          "create one with `seedfl init > swarm.toml`") from None
    return parse_config(text, str(p))


def dump_config(cfg: SwarmConfig) -> str:
    """The fully resolved config as TOML (what a state directory keeps a copy of)."""
    lines: list[str] = []
    data = dataclasses.asdict(cfg)

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            if value is None:
                continue
            if key == "verbalizer":
                pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value)
                lines.append(f"verbalizer = {{ {pairs} }}")
            else:
                plain = list(value) if isinstance(value, tuple) else value
                lines.append(f"{key} = {json.dumps(plain)}")
        lines.append("")
        for key, value in nested.items():
            emit(value, f"{prefix}.{key}" if prefix else key)

    emit(data, "")
    return "\n".join(lines).strip() + "\n"
