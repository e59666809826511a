"""The node: the composition root (``runtime.py``) and the parts it wires.

``options.py`` is what a node is told; ``catchup.py`` and ``pool_catchup.py``
bring a joiner up to the swarm; ``status_view.py`` reads a running node into
a ``NodeStatus``; ``api.py`` is the awaitable face Python users hold.

This package imports from every lower layer (core, training, swarm, net) and
from nothing above it (cli, observe, demo). Importing it is cheap: the
modules that pull in torch and grpc load only when named.
"""
