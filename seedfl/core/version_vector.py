"""Version vectors over dense per-origin logs (DESIGN §6).

A version vector maps each origin to the number of its updates held
contiguously from seq 0. Because every origin's log is dense, two vectors say
exactly which updates one side lacks: the ranges ``[mine, theirs)`` per origin.
Merging is a pointwise max, which is commutative, associative and idempotent.

The value is immutable and canonical: origins with a count of 0 are not stored,
so ``VersionVector({a: 0}) == VersionVector()``. This module knows nothing about
the updates themselves, only their counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from seedfl.core.seeds import NODE_ID_BYTES

_DIGEST_PERSON = b"seedfl/vv/v1"


class VersionVector:
    """origin → count of contiguous updates; an immutable value."""

    __slots__ = ("_counts", "_hash")

    def __init__(self, counts: Mapping[bytes, int] | None = None) -> None:
        clean: dict[bytes, int] = {}
        for origin, count in (counts or {}).items():
            if not isinstance(origin, bytes) or len(origin) != NODE_ID_BYTES:
                raise ValueError(f"origin must be {NODE_ID_BYTES} bytes, got {origin!r}")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"count must be a non-negative integer, got {count!r}")
            if count:
                clean[origin] = count
        self._counts = dict(sorted(clean.items()))
        self._hash: int | None = None

    def get(self, origin: bytes) -> int:
        """Count for origin; 0 when unknown."""
        return self._counts.get(origin, 0)

    def items(self) -> list[tuple[bytes, int]]:
        """(origin, count) pairs with count > 0, sorted by origin."""
        return list(self._counts.items())

    def origins(self) -> list[bytes]:
        return list(self._counts)

    def missing_from(self, other: VersionVector) -> list[tuple[bytes, int, int]]:
        """Ranges ``(origin, start, end)`` that ``other`` holds and ``self`` lacks."""
        return [
            (origin, self.get(origin), count)
            for origin, count in other._counts.items()
            if count > self.get(origin)
        ]

    def merged(self, other: VersionVector) -> VersionVector:
        """Pointwise max of the two vectors."""
        counts = dict(self._counts)
        for origin, count in other._counts.items():
            if count > counts.get(origin, 0):
                counts[origin] = count
        return VersionVector(counts)

    def with_count(self, origin: bytes, count: int) -> VersionVector:
        """A copy with ``origin`` set to ``count`` (which may lower it)."""
        counts = dict(self._counts)
        counts[origin] = count
        return VersionVector(counts)

    def total(self) -> int:
        """Number of updates the vector covers."""
        return sum(self._counts.values())

    def digest(self) -> bytes:
        """8-byte blake2b over the sorted (origin ‖ count as u64 LE) pairs."""
        h = hashlib.blake2b(digest_size=8, person=_DIGEST_PERSON)
        for origin, count in self._counts.items():
            h.update(origin)
            h.update(count.to_bytes(8, "little"))
        return h.digest()

    def dominates(self, other: VersionVector) -> bool:
        """True when self holds every update other holds."""
        return all(self.get(origin) >= count for origin, count in other._counts.items())

    def to_dict(self) -> dict[str, int]:
        """Hex origins → counts, for JSON."""
        return {origin.hex(): count for origin, count in self._counts.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> VersionVector:
        """Inverse of ``to_dict``; raises ValueError on a malformed entry."""
        counts: dict[bytes, int] = {}
        for key, count in data.items():
            try:
                origin = bytes.fromhex(key)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"origin {key!r} is not hex") from exc
            counts[origin] = count
        return cls(counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._counts == other._counts

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._counts.items()))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{o.hex()[:8]}…: {c}" for o, c in self._counts.items())
        return f"VersionVector({{{inner}}})"
