"""Time as the swarm state machines see it.

The state machines never read the system clock themselves: they are handed a
``Clock`` so a test or a simulation can drive hours of protocol time with a
``ManualClock`` in milliseconds of wall time, deterministically. This module
does not know about timers or scheduling; whoever owns the clock decides when
to call ``tick``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``, immune to wall-clock jumps."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError("a clock never goes backwards")
        self._now += dt
