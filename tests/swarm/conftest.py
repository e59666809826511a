"""Fixtures of the swarm tests; the builders live in swarmkit.py."""

from swarmkit import clock, make_node

__all__ = ["clock", "make_node"]
