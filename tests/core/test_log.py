from __future__ import annotations

from pathlib import Path

import pytest

from seedfl.core.log import LogCorruptError, UpdateLog, encode_record
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector

A = bytes([1]) * 16
B = bytes([2]) * 16

BATCHES = [
    UpdateBatch(A, 0, b"abc"),
    UpdateBatch(B, 0, b"\x00\xff", (7, 65535)),
    UpdateBatch(A, 3, b"defg"),
    UpdateBatch(B, 2, b"\x10", (1,)),
]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _write(directory: Path, batches: list[UpdateBatch], **kwargs: object) -> list[Path]:
    with UpdateLog(directory, **kwargs) as log:  # type: ignore[arg-type]
        for batch in batches:
            log.append(batch)
        return log.segment_paths


def test_round_trip(tmp_path: Path) -> None:
    _write(tmp_path, BATCHES)
    log = UpdateLog(tmp_path)
    report = log.recovery
    assert (report.segments, report.records, report.updates, report.truncated_bytes) == (
        1,
        4,
        10,
        0,
    )
    assert list(log.replay()) == BATCHES
    log.append(UpdateBatch(A, 7, b"h"))
    log.close()
    assert list(UpdateLog(tmp_path).replay())[-1] == UpdateBatch(A, 7, b"h")


def test_empty_directory_is_created_and_empty(tmp_path: Path) -> None:
    log = UpdateLog(tmp_path / "state" / "log")
    assert log.recovery.records == 0 and log.recovery.segments == 0
    assert list(log.replay()) == []
    log.close()


def test_torn_tail_at_every_offset_is_truncated(tmp_path: Path) -> None:
    (segment,) = _write(tmp_path / "full", BATCHES)
    data = segment.read_bytes()
    last_start = len(data) - len(encode_record(BATCHES[-1]))
    for cut in range(last_start, len(data)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / segment.name).write_bytes(data[:cut])
        log = UpdateLog(d)
        assert log.recovery.truncated_bytes == cut - last_start, cut
        assert log.recovery.records == 3
        assert (d / segment.name).stat().st_size == last_start
        assert list(log.replay()) == BATCHES[:3]
        log.append(BATCHES[3])  # the log continues cleanly after the cut
        log.close()
        assert list(UpdateLog(d).replay()) == BATCHES


def test_crc_flip_in_last_segment_truncates_from_there(tmp_path: Path) -> None:
    (segment,) = _write(tmp_path, BATCHES)
    data = bytearray(segment.read_bytes())
    second = len(encode_record(BATCHES[0]))
    data[second + 20] ^= 0x01  # inside the payload of record 2
    segment.write_bytes(bytes(data))
    log = UpdateLog(tmp_path)
    assert "CRC mismatch" in log.recovery.detail
    assert log.recovery.records == 1
    assert log.recovery.truncated_bytes == len(data) - second
    assert list(log.replay()) == BATCHES[:1]


def test_corrupt_non_last_segment_is_refused(tmp_path: Path) -> None:
    segments = _write(tmp_path, BATCHES, segment_bytes=1)
    assert len(segments) == 4
    data = bytearray(segments[1].read_bytes())
    data[-1] ^= 0x80  # the CRC itself
    segments[1].write_bytes(bytes(data))
    with pytest.raises(LogCorruptError, match="not the last segment"):
        UpdateLog(tmp_path)


def test_missing_segment_is_refused(tmp_path: Path) -> None:
    segments = _write(tmp_path, BATCHES, segment_bytes=1)
    segments[2].unlink()
    with pytest.raises(LogCorruptError, match="expected a segment starting at record 2"):
        UpdateLog(tmp_path)


def test_segment_rotation(tmp_path: Path) -> None:
    size = len(encode_record(UpdateBatch(A, 0, b"x" * 10)))
    batches = [UpdateBatch(A, 10 * i, b"x" * 10) for i in range(10)]
    segments = _write(tmp_path, batches, segment_bytes=3 * size)
    assert [p.name for p in segments] == [f"log-{i:020d}.seg" for i in (0, 3, 6, 9)]
    assert [p.stat().st_size for p in segments] == [3 * size] * 3 + [size]
    log = UpdateLog(tmp_path, segment_bytes=3 * size)
    assert log.recovery.segments == 4 and log.recovery.updates == 100
    assert list(log.replay()) == batches
    log.append(UpdateBatch(A, 100, b"y"))
    assert log.segment_paths[-1].name == f"log-{9:020d}.seg"  # room left in the last one
    log.close()


def test_replay_after_slices(tmp_path: Path) -> None:
    _write(tmp_path, BATCHES)
    log = UpdateLog(tmp_path)
    after = VersionVector({A: 4, B: 2})
    assert list(log.replay(after)) == [UpdateBatch(A, 4, b"efg"), UpdateBatch(B, 2, b"\x10", (1,))]
    assert list(log.replay(VersionVector({A: 7, B: 3}))) == []
    assert list(log.replay(VersionVector())) == BATCHES
    log.close()


def test_fsync_always_and_never(tmp_path: Path) -> None:
    with UpdateLog(tmp_path / "a", fsync="always") as log:
        for batch in BATCHES:
            log.append(batch)
        assert log.fsync_count == 4
    with UpdateLog(tmp_path / "n", fsync="never") as log:
        for batch in BATCHES:
            log.append(batch)
        assert log.fsync_count == 0
        log.flush()  # an explicit flush always syncs
        assert log.fsync_count == 1


def test_fsync_batch_by_count_and_time(tmp_path: Path) -> None:
    clock = FakeClock()
    log = UpdateLog(tmp_path, fsync="batch", batch_records=3, batch_seconds=1.0, clock=clock)
    for batch in BATCHES[:3]:
        log.append(batch)
    assert log.fsync_count == 1  # three appends
    log.append(BATCHES[3])
    log.tick()
    assert log.fsync_count == 1  # one pending, no time passed
    clock.t = 1.5
    log.tick()
    assert log.fsync_count == 2
    log.tick()
    assert log.fsync_count == 2  # nothing pending
    clock.t = 5.0
    log.append(UpdateBatch(A, 7, b"z"))  # time is up: synced on append
    assert log.fsync_count == 3
    log.close()


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = UpdateLog(tmp_path)
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append(BATCHES[0])


def test_bad_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be one of"):
        UpdateLog(tmp_path, fsync="sometimes")


def test_record_bytes_are_pinned_with_and_without_slots() -> None:
    # Format v1 (docs/ARCHITECTURE.md): a record without slots has flags 0 and
    # reads exactly as before slots existed; flag bit 0 appends count u16 slots.
    plain = encode_record(UpdateBatch(A, 5, b"\x01\x02"))
    assert plain[:10] == b"SFLR\x01\x00" + (16 + 8 + 4 + 2).to_bytes(4, "little")
    assert plain[10:26] == A and plain[26:34] == (5).to_bytes(8, "little")
    assert plain[34:38] == (2).to_bytes(4, "little") and plain[38:40] == b"\x01\x02"
    assert len(plain) == 44
    slotted = encode_record(UpdateBatch(A, 5, b"\x01\x02", (4095, 7)))
    assert slotted[4:6] == b"\x01\x01" and len(slotted) == 48
    assert slotted[40:44] == (4095).to_bytes(2, "little") + (7).to_bytes(2, "little")


def test_slots_survive_reopen_and_slicing(tmp_path: Path) -> None:
    batch = UpdateBatch(B, 0, b"\x01\x02\x03\x04", (10, 20, 30, 4095))
    _write(tmp_path, [batch])
    with UpdateLog(tmp_path) as log:
        assert list(log.replay()) == [batch]
        assert list(log.replay(VersionVector({B: 2}))) == [
            UpdateBatch(B, 2, b"\x03\x04", (30, 4095))]
