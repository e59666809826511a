"""Update records (DESIGN §2, §5, §6).

An update is (origin, seq, code): the 16-byte id of the node that made it, its
per-origin sequence number (dense from 0) and its one-byte quantized projected
gradient. In FedKSeed-Pro mode an update also carries its pool slot k (two
bytes on the wire). A batch is a run of consecutive updates from one origin:
``codes[i]`` belongs to seq ``first_seq + i``, and so does ``slots[i]``.

Both are frozen values validated on construction, so anything holding one can
trust its shape. This module does not know what a code means (codecs.py) nor
which seed it maps to (seeds.py); it only checks that a code is a byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from seedfl.core.seeds import NODE_ID_BYTES

MAX_SLOT = 0xFFFF  # a slot travels as two bytes
_SEQ_LIMIT = 1 << 64  # seqs feed an 8-byte field of the seed hash


def _check_origin(origin: object) -> None:
    if not isinstance(origin, bytes):
        raise ValueError(f"origin must be bytes, got {type(origin).__name__}")
    if len(origin) != NODE_ID_BYTES:
        raise ValueError(f"origin must be {NODE_ID_BYTES} bytes, got {len(origin)}")


def _check_slot(slot: object) -> None:
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot <= MAX_SLOT:
        raise ValueError(f"slot must be an integer in 0..{MAX_SLOT}, got {slot!r}")


@dataclass(frozen=True, slots=True)
class Update:
    """One update; ``slot`` is the pool index when slots travel with updates."""

    origin: bytes
    seq: int
    code: int
    slot: int | None = None

    def __post_init__(self) -> None:
        _check_origin(self.origin)
        if not isinstance(self.seq, int) or not 0 <= self.seq < _SEQ_LIMIT:
            raise ValueError(f"seq must be an integer in 0..2**64-1, got {self.seq!r}")
        if not isinstance(self.code, int) or not 0 <= self.code <= 0xFF:
            raise ValueError(f"code must be a byte value in 0..255, got {self.code!r}")
        if self.slot is not None:
            _check_slot(self.slot)


@dataclass(frozen=True, slots=True)
class UpdateBatch:
    """Consecutive updates ``first_seq .. end_seq - 1`` of one origin; never empty."""

    origin: bytes
    first_seq: int
    codes: bytes
    slots: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_origin(self.origin)
        if isinstance(self.codes, bytearray | memoryview):
            # Callers often build codes in a buffer; keep the value immutable.
            object.__setattr__(self, "codes", bytes(self.codes))
        if not isinstance(self.codes, bytes):
            raise ValueError(f"codes must be bytes, got {type(self.codes).__name__}")
        if not self.codes:
            raise ValueError("a batch holds at least one update")
        if not isinstance(self.first_seq, int) or self.first_seq < 0:
            raise ValueError(f"first_seq must be a non-negative integer, got {self.first_seq!r}")
        if self.first_seq + len(self.codes) > _SEQ_LIMIT:
            raise ValueError("batch runs past seq 2**64-1")
        if self.slots is not None:
            if not isinstance(self.slots, tuple):
                object.__setattr__(self, "slots", tuple(self.slots))
            assert self.slots is not None
            if len(self.slots) != len(self.codes):
                raise ValueError(f"batch has {len(self.codes)} codes but {len(self.slots)} slots")
            for slot in self.slots:
                _check_slot(slot)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def end_seq(self) -> int:
        """One past the last seq in the batch."""
        return self.first_seq + len(self.codes)

    def updates(self) -> Iterator[Update]:
        """The updates one by one, in seq order."""
        for i, code in enumerate(self.codes):
            slot = None if self.slots is None else self.slots[i]
            yield Update(self.origin, self.first_seq + i, code, slot)

    def slice(self, start_seq: int, end_seq: int) -> UpdateBatch:
        """The updates with seq in ``[start_seq, end_seq)``, clipped to this batch.

        Raises ValueError when the clipped range is empty.
        """
        lo = max(start_seq, self.first_seq)
        hi = min(end_seq, self.end_seq)
        if lo >= hi:
            raise ValueError(
                f"seq range [{start_seq}, {end_seq}) does not overlap batch "
                f"[{self.first_seq}, {self.end_seq})"
            )
        if lo == self.first_seq and hi == self.end_seq:
            return self
        i, j = lo - self.first_seq, hi - self.first_seq
        slots = None if self.slots is None else self.slots[i:j]
        return UpdateBatch(self.origin, lo, self.codes[i:j], slots)

    @classmethod
    def of(cls, updates: Iterable[Update]) -> UpdateBatch:
        """Pack consecutive updates of one origin (all with slots or none) into a batch."""
        items = list(updates)
        if not items:
            raise ValueError("a batch holds at least one update")
        head = items[0]
        with_slots = head.slot is not None
        for i, u in enumerate(items):
            if u.origin != head.origin:
                raise ValueError("updates of a batch share one origin")
            if u.seq != head.seq + i:
                raise ValueError(
                    f"updates of a batch are consecutive: expected seq {head.seq + i}, got {u.seq}"
                )
            if (u.slot is not None) != with_slots:
                raise ValueError("updates of a batch either all carry a slot or none do")
        codes = bytes(u.code for u in items)
        slots = tuple(u.slot for u in items if u.slot is not None) if with_slots else None
        return cls(head.origin, head.seq, codes, slots)
