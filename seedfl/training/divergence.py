"""Divergence detection for a node's own steps: NaN is not the only way to fail.

Zeroth-order training with too large a learning rate rarely produces NaN at
once: the loss climbs and stays up (a two-node swarm at the tests' tiny
config went from a loss EMA of 63 to 135 in a minute and kept stepping). So
besides a non-finite loss, ``DivergenceWatch`` calls a run diverged when

    loss EMA  >  max(``multiple`` × baseline, baseline + ``min_rise``)
    for ``patience`` consecutive steps,

where the baseline is the lowest loss of the first ``warmup`` steps this watch
saw (after a restart, of the first steps after the restart): the lowest, not
the mean, because at a hopeless lr the loss explodes within those first steps
and a mean would take the explosion as the start. Defaults:
multiple 3.0, min_rise 1.0 (nats), patience 20, warmup 10. The absolute rise
matters for a model that already fits its data: after a restart a loss near
0.03 triples on ordinary batch noise (seen: 0.087), which is not divergence.
The trade-off: a smaller multiple or patience stops a bad run sooner but can
stop a noisy good one (batch losses of a small batch easily double for a step
or two; twenty steps of a tripled *average* do not happen while learning works).

``observe(loss)`` returns None while all is well and the reason (a sentence)
once the run diverged; the engine turns that into ``DivergedError`` with the
learning rate and ε named. This module knows nothing of models or swarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DivergenceWatch"]


@dataclass
class DivergenceWatch:
    multiple: float = 3.0
    min_rise: float = 1.0
    patience: int = 20
    warmup: int = 10
    ema_decay: float = 0.95

    def __post_init__(self) -> None:
        if self.multiple <= 1 or self.patience < 1 or self.warmup < 1:
            raise ValueError("multiple must be > 1, patience and warmup >= 1")
        self._first: list[float] = []
        self._ema: float | None = None
        self._over = 0

    @property
    def baseline(self) -> float | None:
        if len(self._first) < self.warmup:
            return None
        return min(self._first)

    def observe(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        self._ema = loss if self._ema is None else (
            self.ema_decay * self._ema + (1 - self.ema_decay) * loss)
        if len(self._first) < self.warmup:
            self._first.append(loss)
            return None
        base = self.baseline
        assert base is not None
        limit = max(self.multiple * base, base + self.min_rise)
        self._over = self._over + 1 if self._ema > limit else 0
        if self._over >= self.patience:
            return (f"the loss EMA ({self._ema:.4g}) stayed above {limit:.4g} ({self.multiple:g}x "
                    f"its starting value {base:.4g}) for {self.patience} steps")
        return None
