"""How a running node answers SIGINT and SIGTERM: leave in bounded time, or now.

The first signal asks the node to leave the swarm cleanly (runtime.shutdown:
announce Leave, flush, close). A clean leave can still hang on the network (a
peer that stops reading, a DNS lookup inside mDNS), and an operator or a
supervisor (systemd's TimeoutStopSec, Kubernetes' grace period) must not have
to wait on it. So the leave has a budget, ``SHUTDOWN_BUDGET_S``, after which
the process exits anyway, and a second signal exits at once with 128 + signum,
the shell's convention for "killed by this signal".

Exiting without the clean leave loses nothing the swarm needs: own updates
are fsynced to the log before they are sent (DESIGN §8), peers' updates can be
fetched again, and peers notice the silence and mark the node dead. This
module knows nothing of what a node runs; it owns only the two callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

__all__ = ["SHUTDOWN_BUDGET_S", "ShutdownSignals"]

log = logging.getLogger("seedfl.node")

# Seconds from the first signal to process exit, whatever the network does.
# Below the 5 s a supervisor is promised; above the ~1.5 s a clean leave needs
# on a healthy LAN (Leave 0.5 s, server grace 1 s), so a healthy node leaves
# cleanly and only a stuck one is cut short.
SHUTDOWN_BUDGET_S = 4.0


def _hard_exit(code: int) -> None:
    # Flush what the user should see; os._exit skips atexit, thread joins and
    # the executor shutdown that a stuck leave would otherwise block on.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ShutdownSignals:
    """``on_signal(signum)``: the first sets ``stop``, the second calls ``hard_exit``."""

    def __init__(self, stop: asyncio.Event,
                 hard_exit: Callable[[int], None] = _hard_exit) -> None:
        self.stop = stop
        self.hard_exit = hard_exit
        self.received = 0
        self.first_at: float | None = None  # loop time of the first signal

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, signum: int) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            self.first_at = asyncio.get_running_loop().time()
            log.info("%s: leaving the swarm (a second signal exits at once)", name)
            self.stop.set()
        else:
            log.warning("%s again: exiting now, without a clean leave", name)
            self.hard_exit(128 + signum)

    def remaining(self) -> float:
        """Seconds left of the budget (counted from the first signal, or from now)."""
        loop = asyncio.get_running_loop()
        if self.first_at is None:
            self.first_at = loop.time()
        return max(0.05, SHUTDOWN_BUDGET_S - (loop.time() - self.first_at))

    async def within_budget(self, work: Awaitable[object], exit_code: int) -> None:
        """Await ``work``; when the budget runs out first, hard-exit with ``exit_code``."""
        try:
            await asyncio.wait_for(work, self.remaining())
        except TimeoutError:
            log.warning("leaving took over %.0f s (a peer not reading?): exiting anyway",
                        SHUTDOWN_BUDGET_S)
            self.hard_exit(exit_code)
