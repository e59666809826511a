"""`seedfl demo`: a local 3-node swarm on SmolLM2-135M and Rotten Tomatoes.

``recipe.py`` (the config and prompts, with why each value is what it is),
``run.py`` (the command), ``check.py`` (the exported model scored with plain
transformers). Besides ``training/``, the only package allowed to import
transformers.
"""
