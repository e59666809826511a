"""Fixtures shared by every test area.

``tiny_config`` is a full swarm config on the built-in random model
``seedfl:tiny`` (a 2-layer Llama with a byte tokenizer), so tests never need a
download. Heavier objects (models) are built by the tests that need them.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seedfl.core.config import ModelConfig, SwarmConfig


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # The machine is shared; small models gain nothing from intra-op threads.
    torch.set_num_threads(1)


@pytest.fixture
def tiny_config() -> SwarmConfig:
    """A swarm config whose model is ``seedfl:tiny`` (defaults everywhere else)."""
    return dataclasses.replace(SwarmConfig(), model=ModelConfig(name="seedfl:tiny"))
