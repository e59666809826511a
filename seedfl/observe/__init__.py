"""Watching a node from outside: Prometheus metrics (``metrics.py``), the
bounded per-node history file (``history.py``) and its curves (``plot.py``).

Each part takes a status snapshot callable and a state path, never the node:
this package imports only ``core``, so the node can start its metrics server
and history recorder without an upward import.
"""
