"""Durable append-only update log (DESIGN §8).

The log is a directory of segment files ``log-<first record index>.seg``, the
index zero-padded so names sort. A segment is a run of records; each record is
one UpdateBatch::

    header   magic b"SFLR" | version u8 | flags u8 (bit 0: slots) | payload length u32
    payload  origin 16B | first_seq u64 | count u32 | codes count B | slots count×u16
    trailer  crc32(header ‖ payload) u32

all little-endian. A new segment starts when the current one would pass
``segment_bytes`` (a single record larger than that still gets its own).

Every append reaches the kernel with one ``os.write`` (no user-space buffer),
so kill -9 loses nothing that ``append`` returned for. fsync only matters for
power loss or a kernel crash, and the policy trades throughput for that window:

- ``"always"``: fsync after every append; nothing acknowledged is lost.
- ``"batch"``: fsync once ``batch_records`` appends or ``batch_seconds`` (by the
  injected clock) have accumulated since the last fsync, checked on append and
  on ``tick()``. A power cut loses at most that window, which anti-entropy
  refills from peers, except for this node's own updates not yet pushed.
- ``"never"``: the OS decides; for tests and benchmarks.

``flush()`` always fsyncs. On open the log recovers: it scans every segment,
truncates a torn or corrupt tail of the LAST segment (reported in
``recovery``), and raises LogCorruptError when any earlier segment is damaged
or segments do not follow each other.

TODO(compact): dropping segments covered by a checkpoint needs the store to
hold logs that do not start at seq 0; until then the log only grows.

This module does not know what codes mean, nor which updates a checkpoint
covers; ``replay(after)`` takes that vector from the caller.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector

MAGIC = b"SFLR"
VERSION = 1
_FLAG_SLOTS = 0x01
_HEADER = struct.Struct("<4sBBI")
_PAYLOAD_HEAD = struct.Struct("<16sQI")
_CRC = struct.Struct("<I")
_SEGMENT_RE = re.compile(r"^log-(\d{20})\.seg$")
FSYNC_POLICIES = ("always", "batch", "never")


class LogCorruptError(Exception):
    """A log segment other than the last one is damaged; refusing to guess."""


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the log found: totals kept and the torn tail dropped."""

    segments: int
    records: int
    updates: int
    truncated_bytes: int
    detail: str = ""  # why the tail was truncated, empty when it was not


def encode_record(batch: UpdateBatch) -> bytes:
    """One record's bytes: header, payload, CRC."""
    n = len(batch)
    parts = [_PAYLOAD_HEAD.pack(batch.origin, batch.first_seq, n), batch.codes]
    flags = 0
    if batch.slots is not None:
        flags |= _FLAG_SLOTS
        parts.append(struct.pack(f"<{n}H", *batch.slots))
    payload = b"".join(parts)
    header = _HEADER.pack(MAGIC, VERSION, flags, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header + payload + _CRC.pack(crc)


def _decode_payload(flags: int, payload: bytes) -> UpdateBatch:
    origin, first_seq, n = _PAYLOAD_HEAD.unpack_from(payload)
    body = payload[_PAYLOAD_HEAD.size :]
    with_slots = bool(flags & _FLAG_SLOTS)
    if len(body) != n * (3 if with_slots else 1):
        raise ValueError(f"record says {n} updates but carries {len(body)} payload bytes")
    slots = struct.unpack(f"<{n}H", body[n:]) if with_slots else None
    return UpdateBatch(origin, first_seq, body[:n], slots)


def _scan(data: bytes) -> tuple[list[UpdateBatch], int, str]:
    """Parse records from the start; return them, the clean length and why it stopped early."""
    batches: list[UpdateBatch] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            return batches, pos, f"short header at offset {pos}"
        magic, version, flags, length = _HEADER.unpack_from(data, pos)
        if magic != MAGIC or version != VERSION:
            return batches, pos, f"bad magic or version at offset {pos}"
        end = pos + _HEADER.size + length + _CRC.size
        if end > len(data):
            return batches, pos, f"short record at offset {pos}"
        payload_end = end - _CRC.size
        (crc,) = _CRC.unpack_from(data, payload_end)
        if zlib.crc32(data[pos:payload_end]) != crc:
            return batches, pos, f"CRC mismatch at offset {pos}"
        try:
            batches.append(_decode_payload(flags, data[pos + _HEADER.size : payload_end]))
        except (ValueError, struct.error) as exc:
            return batches, pos, f"malformed record at offset {pos}: {exc}"
        pos = end
    return batches, pos, ""


def _segment_name(first_index: int) -> str:
    return f"log-{first_index:020d}.seg"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UpdateLog:
    """Append-only segmented log of UpdateBatches; recovers on open."""

    def __init__(
        self,
        directory: Path,
        fsync: str = "batch",
        segment_bytes: int = 8 << 20,
        *,
        batch_records: int = 64,
        batch_seconds: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if segment_bytes <= 0 or batch_records <= 0 or batch_seconds < 0:
            raise ValueError("segment_bytes and batch_records must be positive, batch_seconds >= 0")
        self._dir = Path(directory)
        self._policy = fsync
        self._segment_bytes = segment_bytes
        self._batch_records = batch_records
        self._batch_seconds = batch_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closed = False
        self._unsynced = 0
        self._last_sync = clock()
        self._fsyncs = 0
        self._dir.mkdir(parents=True, exist_ok=True)
        # (first record index, path, record count) per segment, in order.
        self._segments: list[tuple[int, Path, int]] = []
        self._size = 0  # bytes in the last segment
        self.recovery = self._recover()

    # -- recovery -----------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        found = sorted(
            (int(m.group(1)), p) for p in self._dir.iterdir() if (m := _SEGMENT_RE.match(p.name))
        )
        records = updates = truncated = 0
        detail = ""
        expected = found[0][0] if found else 0
        for i, (first, path) in enumerate(found):
            if first != expected:
                raise LogCorruptError(
                    f"{path.name}: expected a segment starting at record {expected}"
                )
            data = path.read_bytes()
            batches, clean, why = _scan(data)
            if why:
                if i != len(found) - 1:
                    raise LogCorruptError(f"{path}: {why} (not the last segment)")
                truncated = len(data) - clean
                detail = f"{path.name}: {why}; dropped {truncated} bytes"
                with path.open("r+b") as f:
                    f.truncate(clean)
                    os.fsync(f.fileno())
            self._segments.append((first, path, len(batches)))
            self._size = clean
            records += len(batches)
            updates += sum(len(b) for b in batches)
            expected = first + len(batches)
        if self._segments:
            self._fd = os.open(self._segments[-1][1], os.O_WRONLY | os.O_APPEND)
        return RecoveryReport(len(found), records, updates, truncated, detail)

    # -- writing ------------------------------------------------------------

    def append(self, batch: UpdateBatch) -> None:
        """Write one batch as one record; durable per the fsync policy."""
        record = encode_record(batch)
        with self._lock:
            if self._closed:
                raise ValueError("append to a closed UpdateLog")
            if self._fd is None or (self._size and self._size + len(record) > self._segment_bytes):
                self._rotate()
            assert self._fd is not None
            view = memoryview(record)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._size += len(record)
            first, path, count = self._segments[-1]
            self._segments[-1] = (first, path, count + 1)
            self._unsynced += 1
            if self._policy == "always" or (self._policy == "batch" and self._batch_due()):
                self._sync()

    def tick(self) -> None:
        """Under the "batch" policy, fsync pending appends whose time is up."""
        with self._lock:
            if not self._closed and self._policy == "batch" and self._batch_due():
                self._sync()

    def flush(self) -> None:
        """fsync whatever was appended, whatever the policy."""
        with self._lock:
            if not self._closed:
                self._sync()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._policy != "never":
                self._sync()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._closed = True

    def __enter__(self) -> UpdateLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def fsync_count(self) -> int:
        """fsyncs of segment data so far (for tests and stats)."""
        return self._fsyncs

    @property
    def segment_paths(self) -> list[Path]:
        with self._lock:
            return [path for _, path, _ in self._segments]

    def _batch_due(self) -> bool:
        if self._unsynced == 0:
            return False
        return (
            self._unsynced >= self._batch_records
            or self._clock() - self._last_sync >= self._batch_seconds
        )

    def _sync(self) -> None:
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
            self._fsyncs += 1
        self._unsynced = 0
        self._last_sync = self._clock()

    def _rotate(self) -> None:
        if self._fd is not None:
            if self._policy != "never":
                self._sync()
            os.close(self._fd)
        first = self._segments[-1][0] + self._segments[-1][2] if self._segments else 0
        path = self._dir / _segment_name(first)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        if self._policy != "never":
            _fsync_dir(self._dir)  # the new name must survive a crash too
        self._segments.append((first, path, 0))
        self._size = 0

    # -- reading ------------------------------------------------------------

    def replay(self, after: VersionVector | None = None) -> Iterator[UpdateBatch]:
        """Logged batches in append order, sliced to the updates beyond ``after``.

        Reads the segments as they were when called; raises LogCorruptError if
        a record no longer checks out.
        """
        with self._lock:
            snapshot = [(path, count) for _, path, count in self._segments]
            last_size = self._size
        for i, (path, count) in enumerate(snapshot):
            with path.open("rb") as f:
                data = f.read(last_size) if i == len(snapshot) - 1 else f.read()
            batches, _, why = _scan(data)
            if why or len(batches) != count:
                raise LogCorruptError(f"{path}: changed on disk since open ({why or 'count'})")
            for batch in batches:
                if after is None:
                    yield batch
                    continue
                done = after.get(batch.origin)
                if batch.end_seq > done:
                    yield batch.slice(done, batch.end_seq)
