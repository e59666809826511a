"""Rate budgets: token buckets, and a bounded table of them keyed by node id.

``Budgets.take(key, n, now)`` grants up to ``n`` of what one key (an origin,
or a peer's connection) may still do at ``now``: a bucket per key, filled at
``rate`` per second up to ``rate × burst_s``, created full on first use. A
table with ``max_keys`` evicts its oldest key beyond that, so made-up keys
cannot grow it; an evicted key comes back with a full bucket, which is why
the gossip keeps per-peer tables (a bounded member count) rather than
evicting busy ones. Clock-free: the caller passes ``now``.
"""

from __future__ import annotations

__all__ = ["Budgets", "TokenBucket"]


class TokenBucket:
    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.at = rate, capacity, capacity, now

    def take(self, n: int, now: float) -> int:
        """Take up to n tokens; return how many were granted."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        granted = min(n, int(self.tokens))
        self.tokens -= granted
        return granted


class Budgets:
    """One ``TokenBucket`` per key, at most ``max_keys`` of them (None: no bound)."""

    def __init__(self, rate: float, burst_s: float, max_keys: int | None = None) -> None:
        self.rate, self.burst_s, self.max_keys = rate, burst_s, max_keys
        self.buckets: dict[bytes, TokenBucket] = {}

    def take(self, key: bytes, n: int, now: float) -> int:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate, self.rate * self.burst_s, now)
            if self.max_keys is not None and len(self.buckets) > self.max_keys:
                self.buckets.pop(next(iter(self.buckets)))
        return bucket.take(n, now)

    def set_rate(self, rate: float) -> None:
        """A new fill rate (and depth, ``rate × burst_s``) for every key, kept tokens capped."""
        if rate == self.rate:
            return
        self.rate = rate
        for bucket in self.buckets.values():
            bucket.rate, bucket.capacity = rate, rate * self.burst_s
            bucket.tokens = min(bucket.tokens, bucket.capacity)
