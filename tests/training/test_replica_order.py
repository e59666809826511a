"""Two processes apply the same 1,000 updates from 4 origins in different
interleavings (per-origin order kept) and end within 1e-6 relative difference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

_SCRIPT = r"""
import random, sys
import torch
from seedfl.core.config import ModelConfig, SwarmConfig
from seedfl.core.updates import UpdateBatch
from seedfl.training.engine import Engine
from seedfl.training.model import load_model, load_swarm_model
from seedfl.training.task import Task

torch.set_num_threads(1)
order_seed, out = int(sys.argv[1]), sys.argv[2]
cfg = SwarmConfig(model=ModelConfig(name="seedfl:tiny"))
bundle = load_swarm_model(cfg)
task = Task.from_config(cfg.task.__class__(verbalizer=(("0", "x"), ("1", "y")),
                                           template="{text} ="), bundle.tokenizer)
engine = Engine(cfg, bundle, task, [], bytes(16))
codes = random.Random(7)
origins = [bytes([i]) * 16 for i in range(1, 5)]
logs = {o: bytes(codes.choice([c for c in range(256) if c != 128]) for _ in range(250))
        for o in origins}
pos = {o: 0 for o in origins}
rng = random.Random(order_seed)
while any(pos[o] < 250 for o in origins):
    o = rng.choice([o for o in origins if pos[o] < 250])
    n = min(rng.randint(1, 9), 250 - pos[o])
    engine.apply(UpdateBatch(o, pos[o], logs[o][pos[o]:pos[o] + n]))
    pos[o] += n
assert engine.applied_vector().total() == 1000
torch.save([p.clone() for p in bundle.params], out)
"""


def test_interleavings_agree(tmp_path: Path) -> None:
    outs = []
    for order_seed in (1, 2):
        out = tmp_path / f"params{order_seed}.pt"
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(order_seed), str(out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(torch.load(out))
    a = torch.cat([p.reshape(-1).double() for p in outs[0]])
    b = torch.cat([p.reshape(-1).double() for p in outs[1]])
    start = torch.cat([p.reshape(-1).double() for p in _initial()])
    assert not torch.equal(a, start), "updates did not change the weights"
    rel = float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a))
    assert rel <= 1e-6, rel


def _initial() -> list[torch.Tensor]:
    from seedfl.core.config import ModelConfig
    from seedfl.training.model import load_model

    return load_model(ModelConfig(name="seedfl:tiny")).params
