"""The demo's recipe: the prompts it compares, what trains, and the hyperparameters.

Chosen by measurement on this repository's 2-core reference machine with
SmolLM2-135M-Instruct on Rotten Tomatoes (README, "The demo"):

- Three prompts are scored zero-shot on the held-out sentences and the best
  one is trained; all three are reported, so the gain is measured against the
  best prompt, not a weak one. Measured (400 sentences, 64 tokens):
  "Review: {text}\\nSentiment:" with " negative"/" positive" 74.75%; the
  question template 53.25%; MeZO's "{text} It was" with " terrible"/" great"
  51.0%.
- Trainable: the final norm (576 numbers) and the head rows of the two label
  words (``seedfl_label_rows.weight``, 2 x 576; the head is tied to the
  embeddings, so training it whole would perturb 28 M numbers to move 1 k).
  Every decoder layer is frozen, so each node computes the layers once per
  sentence and each ZO pass runs only the norm and two head rows
  (training/prefix.py). First-order backprop on these 1.7 k numbers reaches
  about 83% (bench learning's AdamW arm).
- ``zo.scale = "act0"``: the norm's weights are ~1.7 and the head's ~0.1, and
  the hidden state the head reads has channels 44x louder than the median; one
  step size per tensor (rms0) stalls, first-order SGD with it too. act0 adds a
  power of two per input channel from a fixed probe (training/act_scales.py,
  docs/LEARNING.md "Activation-aware scale").
- ``zo.swarm_scale = "mean"``: each node's step counts 1/N, so the three nodes
  average their probes instead of tripling the step.
- lr 0.3 with a cosine decay over the run after 300 warmup updates (a node that
  starts first steps alone, at N = 1, until its peers count), batch 128, eps 1e-3. Chosen on a
  replay of the exact rule (Rademacher, log8, lock-step rounds of 3 nodes) on
  the cached hidden states of these splits: act0 at lr 0.3 ended at 80.0-81.0%
  over three seeds where rms0 at its best lr (3e-2) ended at 77.25%; lr 0.5
  drifts. The committed `make demo` result is in bench/results/demo.json.
"""

from __future__ import annotations

import json
from typing import Final

from seedfl.training.prompts import Prompt

DEMO_RECIPE: Final[dict[str, int]] = {
    "steps_per_node": 3000,
    "train_per_node": 600,
    "holdout": 400,
}

NEG_POS: Final = (("0", " negative"), ("1", " positive"))
PROMPTS: Final[tuple[Prompt, ...]] = (
    Prompt("Review: {text}\nSentiment:", NEG_POS),
    Prompt("{text} It was", (("0", " terrible"), ("1", " great"))),
    Prompt("{text}\nQuestion: Is this movie review positive or negative?\nAnswer:", NEG_POS),
)

_CONFIG: Final[str] = """\
# The seedfl demo swarm: written by `seedfl demo`; see seedfl/demo_recipe.py
# for why each value is what it is.

[model]
name = "seedfl:smollm2-135m"
dtype = "float32"
trainable = ["model.norm.weight", "seedfl_label_rows.weight"]

[task]
type = "classification"
template = {template}
text_field = "text"
label_field = "label"
verbalizer = {verbalizer}
max_length = 64

[zo]
eps = 1e-3
lr = 0.3
schedule = "cosine"
warmup = 300
horizon = {horizon}
batch_size = 128
perturbation = "rademacher"
seeds = "update"
scale = "act0"
swarm_scale = "mean"

[codec]
name = "log8"

[swarm]
name = "seedfl-demo"
# Three nodes step tens of times a second: the default cap (50/s per origin)
# would drop updates that then have to be pulled.
rate_cap = 1000.0
"""


def demo_config_text(prompt: Prompt = PROMPTS[0],
                     steps_per_node: int = DEMO_RECIPE["steps_per_node"]) -> str:
    """The swarm config every demo node shares (parses with ``parse_config``).

    The schedule's horizon is the run's length: every node's seq ends there.
    """
    words = ", ".join(f"{json.dumps(label)} = {json.dumps(word)}"
                      for label, word in prompt.verbalizer)
    return (_CONFIG.replace("{template}", json.dumps(prompt.template))
            .replace("{verbalizer}", "{ " + words + " }")
            .replace("{horizon}", str(max(2, steps_per_node))))
