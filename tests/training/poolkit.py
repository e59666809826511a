"""Shared fixtures for the seed-pool tests: a tiny pool swarm and peers' batches."""

from __future__ import annotations

import random

import torch

from seedfl.core.config import TaskConfig
from seedfl.core.updates import UpdateBatch
from seedfl.training.data import Example
from seedfl.training.engine import Engine
from seedfl.training.model import load_swarm_model
from seedfl.training.task import Task

TASK = TaskConfig(template="{text}=", verbalizer=(("0", "n"), ("1", "y")), max_length=16)
ME = bytes([0xAA]) * 16
PEERS = [bytes([i]) * 16 for i in range(1, 4)]


def engine(cfg, examples: list[Example] | None = None) -> Engine:  # type: ignore[no-untyped-def]
    bundle = load_swarm_model(cfg)
    return Engine(cfg, bundle, Task.from_config(cfg.task, bundle.tokenizer), examples or [], ME)


def peer_batches(cfg, n: int, seed: int = 1) -> list[UpdateBatch]:  # type: ignore[no-untyped-def]
    """Batches of 1..9 updates from PEERS with realistic log8 codes, per-origin in order."""
    rng = random.Random(seed)
    out, pos = [], dict.fromkeys(PEERS, 0)
    importance = cfg.zo.pool_sampling == "importance"
    for _ in range(n):
        o = rng.choice(PEERS)
        m = rng.randint(1, 9)
        codes = bytes((rng.randint(10, 60) * rng.choice((1, -1))) & 0xFF for _ in range(m))
        slots = tuple(rng.randrange(cfg.zo.pool_size) for _ in range(m)) if importance else None
        out.append(UpdateBatch(o, pos[o], codes, slots))
        pos[o] += m
    return out


def flat(e: Engine) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in e.bundle.params])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a))
