"""Training: the model and θ, tasks and data, the ZO estimator, the engine, checkpoints.

The only package that imports transformers or peft. It applies updates and
computes new ones; it knows nothing of sockets, peers or the event loop.
Submodules are imported explicitly (``from seedfl.training.model import
load_model``) so that importing the package stays cheap.
"""
