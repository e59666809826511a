"""The in-memory set of updates: dense per-origin logs plus an out-of-order buffer.

DESIGN §2 and §6: per origin, updates are applied in seq order, and one whose
predecessor is missing waits. The store keeps, per origin, the contiguous
prefix ``0 .. n-1`` as one bytearray of codes (and, when that origin's batches
carry pool slots, an array of slots), and batches that start beyond ``n`` in a
bounded buffer. ``add`` returns what became contiguous, exactly once, in seq
order: the caller hands that to the trainer and to the log.

The buffer is bounded per origin. When it overflows, the updates farthest
ahead are dropped (the ones nearest the contiguous end are released soonest);
nothing is lost for good, because anti-entropy fetches any range a peer's
version vector shows we lack.

Accounting: every update passed to ``add`` ends up counted exactly once as
stored, duplicate, overflow-dropped or (for now) buffered.

The store is thread-safe behind one lock: the gossip layer writes and the
trainer and servers read. It does not validate codes against a codec, judge
whether a seq is too far ahead, or touch the disk (log.py does).
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector

DEFAULT_MAX_BUFFERED = 1 << 16


@dataclass
class StoreStats:
    """Counters in updates (not batches); ``buffered`` is a gauge."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    buffered: int = 0
    overflow_dropped: int = 0


@dataclass
class _OriginLog:
    codes: bytearray = field(default_factory=bytearray)
    slots: array[int] | None = None
    with_slots: bool | None = None  # fixed by the first batch seen from this origin
    pending: list[UpdateBatch] = field(default_factory=list)  # sorted, disjoint, > len(codes)
    pending_count: int = 0


def _end_of(batch: UpdateBatch) -> int:
    return batch.end_seq


class UpdateStore:
    """Per-origin dense logs of code bytes; thread-safe."""

    def __init__(self, max_buffered_per_origin: int = DEFAULT_MAX_BUFFERED) -> None:
        if max_buffered_per_origin < 0:
            raise ValueError("max_buffered_per_origin must be >= 0")
        self._max_buffered = max_buffered_per_origin
        self._lock = threading.Lock()
        self._logs: dict[bytes, _OriginLog] = {}
        self._stats = StoreStats()

    # -- writes -----------------------------------------------------------

    def add(self, batch: UpdateBatch) -> list[UpdateBatch]:
        """Store what is new in ``batch``; return what became contiguous, in seq order.

        Raises ValueError if the batch carries slots and earlier batches of its
        origin did not, or the other way round.
        """
        with self._lock:
            log = self._log_for(batch)
            self._stats.received += len(batch)
            end = len(log.codes)
            if batch.first_seq > end:
                self._buffer(log, batch)
                return []
            if batch.end_seq <= end:
                self._stats.duplicates += len(batch)
                return []
            self._stats.duplicates += end - batch.first_seq
            self._append(log, batch.slice(end, batch.end_seq))
            self._drain(log)
            return [self._range(batch.origin, log, end, len(log.codes))]

    def load(self, batches: Iterable[UpdateBatch]) -> int:
        """Recovery: append batches replayed from the log; return how many updates were new.

        Batches must continue each origin's log without a gap (overlap is
        skipped). They do not count as received.
        """
        loaded = 0
        with self._lock:
            for batch in batches:
                log = self._log_for(batch)
                end = len(log.codes)
                if batch.first_seq > end:
                    raise ValueError(
                        f"gap while loading origin {batch.origin.hex()}: holds {end} updates, "
                        f"batch starts at seq {batch.first_seq}"
                    )
                if batch.end_seq > end:
                    self._append(log, batch.slice(end, batch.end_seq))
                    loaded += batch.end_seq - end
                    self._drain(log)
        return loaded

    # -- reads ------------------------------------------------------------

    def get_range(self, origin: bytes, start: int, end: int) -> UpdateBatch:
        """Updates ``[start, end)`` of origin, clipped to what is held contiguously.

        Raises KeyError when nothing of origin is held, ValueError when the
        clipped range is empty.
        """
        if not 0 <= start < end:
            raise ValueError(f"bad seq range [{start}, {end})")
        with self._lock:
            log = self._logs.get(origin)
            if log is None or not log.codes:
                raise KeyError(f"no updates held for origin {origin.hex()}")
            held = len(log.codes)
            if start >= held:
                raise ValueError(
                    f"origin {origin.hex()}: holds seqs [0, {held}), asked for [{start}, {end})"
                )
            return self._range(origin, log, start, min(end, held))

    def version_vector(self) -> VersionVector:
        with self._lock:
            return VersionVector({o: len(log.codes) for o, log in self._logs.items()})

    def origins(self) -> list[bytes]:
        """Origins with at least one contiguous update, sorted."""
        with self._lock:
            return sorted(o for o, log in self._logs.items() if log.codes)

    def codes_for(self, origin: bytes) -> bytes:
        """Snapshot of origin's contiguous codes (empty when none)."""
        with self._lock:
            log = self._logs.get(origin)
            return b"" if log is None else bytes(log.codes)

    def slots_for(self, origin: bytes) -> tuple[int, ...] | None:
        """Snapshot of origin's contiguous slots; None when its batches carry none."""
        with self._lock:
            log = self._logs.get(origin)
            if log is None or log.slots is None:
                return None
            return tuple(log.slots)

    @property
    def stats(self) -> StoreStats:
        """A snapshot of the counters."""
        with self._lock:
            return replace(self._stats)

    # -- internals (lock held) --------------------------------------------

    def _log_for(self, batch: UpdateBatch) -> _OriginLog:
        log = self._logs.get(batch.origin)
        if log is None:
            log = self._logs[batch.origin] = _OriginLog()
        has_slots = batch.slots is not None
        if log.with_slots is None:
            log.with_slots = has_slots
            log.slots = array("H") if has_slots else None
        elif log.with_slots != has_slots:
            raise ValueError(
                f"origin {batch.origin.hex()}: batches "
                f"{'carry' if log.with_slots else 'carry no'} slots, this one "
                f"{'does' if has_slots else 'does not'}"
            )
        return log

    def _append(self, log: _OriginLog, batch: UpdateBatch) -> None:
        log.codes += batch.codes
        if log.slots is not None and batch.slots is not None:
            log.slots.extend(batch.slots)
        self._stats.stored += len(batch)

    def _drain(self, log: _OriginLog) -> None:
        """Move buffered batches that now touch the contiguous end into the log."""
        taken = 0
        for pending in log.pending:
            end = len(log.codes)
            if pending.first_seq > end:
                break
            taken += 1
            log.pending_count -= len(pending)
            self._stats.buffered -= len(pending)
            overlap = min(pending.end_seq, end) - pending.first_seq
            self._stats.duplicates += overlap
            if pending.end_seq > end:
                self._append(log, pending.slice(end, pending.end_seq))
        del log.pending[:taken]

    def _buffer(self, log: _OriginLog, batch: UpdateBatch) -> None:
        """Keep the parts of batch not already buffered, then enforce the bound."""
        pieces: list[UpdateBatch] = []
        cursor = batch.first_seq
        i = bisect.bisect_right(log.pending, cursor, key=_end_of)
        for held in log.pending[i:]:
            if held.first_seq >= batch.end_seq:
                break
            if held.first_seq > cursor:
                pieces.append(batch.slice(cursor, held.first_seq))
            cursor = max(cursor, held.end_seq)
        if cursor < batch.end_seq:
            pieces.append(batch.slice(cursor, batch.end_seq))
        fresh = sum(len(p) for p in pieces)
        self._stats.duplicates += len(batch) - fresh
        for piece in pieces:
            bisect.insort(log.pending, piece, key=lambda b: b.first_seq)
        log.pending_count += fresh
        self._stats.buffered += fresh
        excess = log.pending_count - self._max_buffered
        while excess > 0:
            last = log.pending[-1]
            cut = min(excess, len(last))
            if cut == len(last):
                log.pending.pop()
            else:
                log.pending[-1] = last.slice(last.first_seq, last.end_seq - cut)
            excess -= cut
            log.pending_count -= cut
            self._stats.buffered -= cut
            self._stats.overflow_dropped += cut

    @staticmethod
    def _range(origin: bytes, log: _OriginLog, start: int, end: int) -> UpdateBatch:
        slots = None if log.slots is None else tuple(log.slots[start:end])
        return UpdateBatch(origin, start, bytes(log.codes[start:end]), slots)
