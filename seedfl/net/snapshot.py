"""The Snapshot RPC: a checkpoint file streamed in hashed chunks, resumable.

Server side, ``serve_file`` cuts one file into chunks of ``chunk_bytes``
(default 1 MiB); every chunk carries its index, the chunk count, the sha256 of
its data, the file's version vector and the sha256 of the whole file. A
request may start at ``resume_from``.

Client side, ``receive_snapshot`` writes chunks in order to a file, checks
each chunk's hash as it arrives and the whole file's at the end, and on a
broken stream asks again from the next missing chunk as long as the server
still offers the same file (same whole-file hash); otherwise it starts over.
``on_chunk`` sees every chunk (progress, and the link-speed probe of the
catch-up, which may stop the transfer by returning False).

Also here, because the messages exist only for this RPC: their conversion
between protobuf and the dataclasses below, with the same validation rules as
``convert``. This module does not know what the file contains.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.convert import ConversionError, Limits
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb

DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 8 << 20
MIN_CHUNK = 4 << 10


class SnapshotUnavailable(Exception):
    """The peer cannot serve a snapshot that dominates what we asked for."""


@dataclass(frozen=True)
class SnapshotRequest:
    at_least: VersionVector
    chunk_bytes: int = 0
    resume_from: int = 0


@dataclass(frozen=True)
class SnapshotChunk:
    index: int
    total: int
    data: bytes
    sha256: bytes
    vv: VersionVector
    snapshot_sha256: bytes


def request_to_proto(req: SnapshotRequest) -> pb.SnapshotRequest:
    return pb.SnapshotRequest(at_least=convert.vv_to_proto(req.at_least),
                              chunk_bytes=req.chunk_bytes, resume_from=req.resume_from)


def request_from_proto(msg: pb.SnapshotRequest,
                       limits: Limits = convert.DEFAULT_LIMITS) -> SnapshotRequest:
    if msg.chunk_bytes and not MIN_CHUNK <= msg.chunk_bytes <= MAX_CHUNK:
        raise ConversionError(f"chunk_bytes {msg.chunk_bytes} outside [{MIN_CHUNK}, {MAX_CHUNK}]")
    return SnapshotRequest(convert.vv_from_proto(msg.at_least, limits), msg.chunk_bytes,
                           msg.resume_from)


def chunk_to_proto(c: SnapshotChunk) -> pb.SnapshotChunk:
    return pb.SnapshotChunk(index=c.index, total=c.total, data=c.data, sha256=c.sha256,
                            vv=convert.vv_to_proto(c.vv), snapshot_sha256=c.snapshot_sha256)


def chunk_from_proto(msg: pb.SnapshotChunk,
                     limits: Limits = convert.DEFAULT_LIMITS) -> SnapshotChunk:
    if msg.total == 0 or msg.index >= msg.total:
        raise ConversionError(f"chunk index {msg.index} of {msg.total}")
    if len(msg.sha256) != 32 or len(msg.snapshot_sha256) != 32:
        raise ConversionError("chunk hashes must be 32 bytes")
    if len(msg.data) > MAX_CHUNK:
        raise ConversionError(f"chunk of {len(msg.data)} bytes")
    return SnapshotChunk(msg.index, msg.total, msg.data, msg.sha256,
                         convert.vv_from_proto(msg.vv, limits), msg.snapshot_sha256)


async def serve_file(path: Path, size: int, vv: VersionVector, sha256: bytes,
                     request: SnapshotRequest,
                     read: Callable[[int, int], Awaitable[bytes]]) -> AsyncIterator[SnapshotChunk]:
    """Chunks of the file from ``request.resume_from`` on.

    ``read(offset, n)`` is awaited for the bytes (the caller runs it off the
    loop, on a descriptor opened before the first chunk so that pruning the
    file mid-transfer does not break it).
    """
    step = request.chunk_bytes or DEFAULT_CHUNK
    total = max(1, -(-size // step))
    for index in range(request.resume_from, total):
        data = await read(index * step, min(step, size - index * step))
        yield SnapshotChunk(index, total, data, hashlib.sha256(data).digest(), vv, sha256)


@dataclass
class Received:
    path: Path
    vv: VersionVector
    size: int
    seconds: float
    resumed: int = 0
    complete: bool = True


ChunkStream = Callable[[SnapshotRequest], AsyncIterator[SnapshotChunk]]


async def receive_snapshot(stream: ChunkStream, at_least: VersionVector, dest: Path, *,
                           chunk_bytes: int = 0, attempts: int = 5,
                           on_chunk: Callable[[SnapshotChunk], bool] | None = None) -> Received:
    """Fetch a whole snapshot into ``dest`` (fsynced); see the module docstring.

    ``stream(request)`` opens one Snapshot call. Raises SnapshotUnavailable
    when the server refuses, ConversionError on a corrupt chunk after the
    retries, and whatever the transport raises on the last attempt.
    """
    t0 = time.perf_counter()
    expect: bytes | None = None
    vv: VersionVector | None = None
    next_index, resumed, written = 0, 0, 0
    whole = hashlib.sha256()
    fh = open(dest, "wb")  # noqa: SIM115 - kept across attempts
    try:
        for attempt in range(attempts):
            try:
                async for chunk in stream(SnapshotRequest(at_least, chunk_bytes, next_index)):
                    if expect is not None and chunk.snapshot_sha256 != expect:
                        # The server moved on to a newer file: start over.
                        raise _Restart()
                    if chunk.index != next_index:
                        raise ConversionError(f"chunk {chunk.index}, expected {next_index}")
                    if hashlib.sha256(chunk.data).digest() != chunk.sha256:
                        raise ConversionError(f"chunk {chunk.index}: sha256 mismatch")
                    expect, vv = chunk.snapshot_sha256, chunk.vv
                    fh.write(chunk.data)
                    whole.update(chunk.data)
                    written += len(chunk.data)
                    next_index += 1
                    if on_chunk is not None and not on_chunk(chunk):
                        fh.flush()
                        return Received(dest, vv, written, time.perf_counter() - t0, resumed,
                                        complete=False)
                    if next_index == chunk.total:
                        break
                else:
                    raise ConnectionError("snapshot stream ended early")
                if whole.digest() != expect:
                    raise _Restart()
                fh.flush()
                os.fsync(fh.fileno())
                assert vv is not None
                return Received(dest, vv, written, time.perf_counter() - t0, resumed)
            except SnapshotUnavailable:
                raise
            except (_Restart, ConversionError):
                if attempt == attempts - 1:
                    raise
                expect, next_index, written, whole = None, 0, 0, hashlib.sha256()
                fh.seek(0)
                fh.truncate()
            except Exception:
                if attempt == attempts - 1:
                    raise
                resumed += 1
        raise ConnectionError("snapshot transfer failed")
    finally:
        fh.close()


class _Restart(Exception):
    pass
