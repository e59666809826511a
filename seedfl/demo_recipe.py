"""The demo's recipe: prompt, trainable parameters and hyperparameters.

Chosen by measurement on this repository's 2-core reference machine with
SmolLM2-135M-Instruct on Rotten Tomatoes (README, "The demo"):

- Prompt ``"<sentence> It was"`` with label words ``" terrible"`` / ``" great"``
  (MeZO's SST-2 prompt). Zero-shot the model answers " great" nearly always
  (about 50%), yet the ranking of the two words is informative, so a small
  recalibration is worth many points. A "Review: ... Sentiment:" prompt starts
  near 80% and leaves little to show in a few minutes.
- Only ``model.norm.weight`` (576 numbers) trains. Zeroth-order estimates get
  noisier with the number of trainable parameters (MeZO's analysis: the step
  must shrink with the effective dimension); with 576 of them 180 swarm updates
  move the accuracy by well over ten points, while full-model ZO needs
  thousands of steps to do the same.
- eps 1e-3 and lr 1e-2: at eps 1e-2 and above the two losses differ by
  curvature as much as by slope; lr 3e-2 diverged in the study, 3e-3 learned
  too slowly for 15 minutes.
- 32 tokens per example (most sentences fit; longer ones keep their end, next
  to the label word) and 8 examples per forward keep one step near 5 s on one
  core, so 3 nodes x 60 steps on 2 cores fit the 15-minute budget with the
  three evaluations.
"""

from __future__ import annotations

from typing import Final

DEMO_RECIPE: Final[dict[str, int]] = {
    "steps_per_node": 60,
    "train_per_node": 600,
    "holdout": 400,
}

_CONFIG: Final[str] = """\
# The seedfl demo swarm: written by `seedfl demo`; see seedfl/demo_recipe.py
# for why each value is what it is.

[model]
name = "seedfl:smollm2-135m"
dtype = "float32"
trainable = ["model.norm.weight"]

[task]
type = "classification"
template = "{text} It was"
text_field = "text"
label_field = "label"
verbalizer = { "0" = " terrible", "1" = " great" }
max_length = 32

[zo]
eps = 1e-3
lr = 1e-2
batch_size = 8
perturbation = "rademacher"
seeds = "update"

[codec]
name = "log8"

[swarm]
name = "seedfl-demo"
"""


def demo_config_text() -> str:
    """The swarm config every demo node shares (parses with ``parse_config``)."""
    return _CONFIG
