"""Swarm protocol logic: membership, gossip and anti-entropy as pure state machines.

Nothing in this package opens a socket, starts a thread or awaits: the node
feeds frames and clock ticks in, and sends what comes out.
"""
