"""The only module that maps protobuf messages to domain values and back.

``*_to_proto`` trusts its input (domain values are validated where they are
built). ``*_from_proto`` trusts nothing (DESIGN §13): it checks id lengths,
counts against code lengths, slot counts and (when :class:`Limits` names the
swarm's pool) slots against the pool, sizes against :class:`Limits`, seqs
against an absurdity bound and the oneof kind, and raises
:class:`ConversionError` naming what is wrong. :func:`parse` turns raw bytes
into a message and maps protobuf decode errors to ConversionError too, so a
caller that handles ConversionError handles every malformed input.

sign1 codes (``wire_bits == 1``) travel eight to a byte, least significant bit
first; every other codec sends one byte per update. The swarm's codec decides,
so callers pass ``wire_bits``. This module does not know what a code means,
whether a seq is plausible for a given peer, or anything about sockets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from seedfl.core.seeds import NODE_ID_BYTES, SWARM_KEY_BYTES
from seedfl.core.updates import MAX_SLOT, UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.swarm import messages as m


class ConversionError(ValueError):
    """Inbound message is malformed; ``reason`` says how (for status and counters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer may send in one message."""

    max_batch: int = 65_536  # updates in one batch
    max_seq: int = 1 << 48  # beyond this a seq or count is absurd (9 years at 1 M/s)
    max_ranges: int = 4_096  # ranges in one Want or Fetch
    max_vv_entries: int = 65_536  # origins in one version vector
    max_members: int = 4_096  # rows in one membership frame
    max_text: int = 512  # characters of names, addresses, reasons, versions
    max_blob: int = 128  # bytes of fingerprints, proofs, nonces, digests
    # Seed-pool slots (DESIGN §5), fixed by the swarm config: None checks
    # nothing (tools, tests); 0 means batches carry no slots (no pool, or
    # uniform slots); K means every batch carries one slot per update, < K.
    pool_slots: int | None = None
    max_pool_state: int = 4 * 65_536 + 64  # bytes of serialised accumulators (K ≤ 65536)


DEFAULT_LIMITS = Limits()

_STATE_FROM_PB: dict[int, m.MemberState] = {
    pb.MEMBER_STATE_ALIVE: "alive",
    pb.MEMBER_STATE_SUSPECT: "suspect",
    pb.MEMBER_STATE_DEAD: "dead",
    pb.MEMBER_STATE_LEFT: "left",
}
_STATE_TO_PB: dict[str, Any] = {state: number for number, state in _STATE_FROM_PB.items()}

M = TypeVar("M", bound=Message)


def parse(cls: type[M], data: bytes) -> M:
    """Parse serialized bytes into ``cls``; malformed bytes raise ConversionError."""
    try:
        parsed: M = cls.FromString(data)
        return parsed
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ConversionError(f"cannot decode {cls.__name__}: {exc}") from exc


# --- field checks -------------------------------------------------------------


def _id(value: bytes, what: str, size: int = NODE_ID_BYTES) -> bytes:
    if len(value) != size:
        raise ConversionError(f"{what} must be {size} bytes, got {len(value)}")
    return bytes(value)


def _blob(value: bytes, what: str, lim: Limits) -> bytes:
    if len(value) > lim.max_blob:
        raise ConversionError(f"{what} is {len(value)} bytes, over the limit {lim.max_blob}")
    return bytes(value)


def _text(value: str, what: str, lim: Limits) -> str:
    if len(value) > lim.max_text:
        raise ConversionError(f"{what} is {len(value)} characters, over {lim.max_text}")
    return value


def _count(value: int, what: str, lim: Limits) -> int:
    if value > lim.max_seq:
        raise ConversionError(f"{what} {value} is beyond the sane bound {lim.max_seq}")
    return value


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ConversionError(f"{what} must be finite, got {value}")
    return value


def _many(items: Sequence[Any], what: str, limit: int) -> None:
    if len(items) > limit:
        raise ConversionError(f"{len(items)} {what}, over the limit {limit}")


def _check_wire_bits(wire_bits: int) -> None:
    if wire_bits not in (1, 8):
        raise ValueError(f"wire_bits is 8 or 1, got {wire_bits}")


# --- updates and version vectors ---------------------------------------------


def batch_to_proto(
    batch: UpdateBatch, wire_bits: int = 8, sender: bytes | None = None
) -> pb.UpdateBatch:
    """``sender``: the node writing this Gossip stream. Its own batches leave the
    origin out (18 of the ~40 bytes a one-update batch costs) and 8-bit batches
    leave out ``count`` (the code bytes say it)."""
    _check_wire_bits(wire_bits)
    codes = batch.codes
    if wire_bits == 1:
        arr = np.frombuffer(codes, dtype=np.uint8)
        if arr.max() > 1:
            raise ValueError("sign1 codes are 0 or 1")
        codes = np.packbits(arr, bitorder="little").tobytes()
    return pb.UpdateBatch(
        origin=b"" if batch.origin == sender else batch.origin,
        first_seq=batch.first_seq,
        codes=codes,
        count=0 if wire_bits == 8 else len(batch),
        slots=batch.slots or (),
    )


def batch_from_proto(
    msg: pb.UpdateBatch, wire_bits: int = 8, limits: Limits = DEFAULT_LIMITS,
    sender: bytes | None = None,
) -> UpdateBatch:
    """``sender``: the remote node of the Gossip stream (an empty origin means it);
    None where no stream gives one (Fetch), so the origin must be present."""
    _check_wire_bits(wire_bits)
    origin = (sender if sender is not None and not msg.origin
              else _id(msg.origin, "batch origin"))
    count = msg.count
    if wire_bits == 8 and count == 0:
        count = len(msg.codes)  # 8-bit batches may leave count out
    if count == 0:
        raise ConversionError("batch holds no updates")
    if count > limits.max_batch:
        raise ConversionError(f"batch of {count} updates, over the limit {limits.max_batch}")
    _count(msg.first_seq + count, "batch end seq", limits)
    if wire_bits == 8:
        if len(msg.codes) != count:
            raise ConversionError(f"batch count {count} but {len(msg.codes)} code bytes")
        codes = bytes(msg.codes)
    else:
        if len(msg.codes) != (count + 7) // 8:
            raise ConversionError(f"sign1 batch count {count} but {len(msg.codes)} code bytes")
        bits = np.unpackbits(np.frombuffer(msg.codes, dtype=np.uint8), bitorder="little")
        if bits[count:].any():
            raise ConversionError("sign1 batch has nonzero padding bits")
        codes = bits[:count].tobytes()
    slots: tuple[int, ...] | None = None
    if len(msg.slots):
        if len(msg.slots) != count:
            raise ConversionError(f"batch count {count} but {len(msg.slots)} slots")
        if max(msg.slots) > MAX_SLOT:
            raise ConversionError(f"slot beyond {MAX_SLOT}")
        slots = tuple(msg.slots)
    _check_slots(slots, limits.pool_slots)
    try:
        return UpdateBatch(origin, msg.first_seq, codes, slots)
    except ValueError as exc:  # whatever the domain type refuses on top of our checks
        raise ConversionError(f"invalid batch: {exc}") from exc


def _check_slots(slots: tuple[int, ...] | None, pool_slots: int | None) -> None:
    if pool_slots is None:
        return
    if pool_slots == 0 and slots is not None:
        raise ConversionError("batch carries pool slots; this swarm's updates carry none")
    if pool_slots > 0:
        if slots is None:
            raise ConversionError("batch lacks pool slots; this swarm samples them by importance")
        if max(slots) >= pool_slots:
            raise ConversionError(f"slot {max(slots)} is outside the pool of {pool_slots}")


def vv_to_proto(vv: VersionVector) -> pb.VersionVector:
    return pb.VersionVector(entries=[pb.VersionEntry(origin=o, count=c) for o, c in vv.items()])


def vv_from_proto(msg: pb.VersionVector, limits: Limits = DEFAULT_LIMITS) -> VersionVector:
    _many(msg.entries, "version vector entries", limits.max_vv_entries)
    counts: dict[bytes, int] = {}
    for entry in msg.entries:
        origin = _id(entry.origin, "version vector origin")
        if origin in counts:
            raise ConversionError(f"origin {origin.hex()} twice in a version vector")
        counts[origin] = _count(entry.count, "version vector count", limits)
    try:
        return VersionVector(counts)
    except ValueError as exc:
        raise ConversionError(f"invalid version vector: {exc}") from exc


def _ranges_to_proto(ranges: Sequence[m.Range]) -> list[pb.Range]:
    return [pb.Range(origin=o, start=s, end=e) for o, s, e in ranges]


def _ranges_from_proto(ranges: Sequence[pb.Range], lim: Limits) -> tuple[m.Range, ...]:
    _many(ranges, "ranges", lim.max_ranges)
    out: list[m.Range] = []
    for r in ranges:
        origin = _id(r.origin, "range origin")
        if r.start >= r.end:
            raise ConversionError(f"empty or reversed range [{r.start}, {r.end})")
        out.append((origin, r.start, _count(r.end, "range end", lim)))
    return tuple(out)


def fetch_to_proto(req: m.FetchRequest) -> pb.FetchRequest:
    return pb.FetchRequest(ranges=_ranges_to_proto(req.ranges))


def fetch_from_proto(msg: pb.FetchRequest, limits: Limits = DEFAULT_LIMITS) -> m.FetchRequest:
    return m.Want(_ranges_from_proto(msg.ranges, limits))


@dataclass(frozen=True)
class PoolState:
    """A peer's seed-pool accumulators (core/pool.py snapshot form) at its vector ``vv``."""

    vv: VersionVector
    state: bytes


def pool_state_to_proto(p: PoolState) -> pb.PoolAccumulators:
    return pb.PoolAccumulators(vv=vv_to_proto(p.vv), state=p.state)


def pool_state_from_proto(msg: pb.PoolAccumulators,
                          limits: Limits = DEFAULT_LIMITS) -> PoolState:
    """Checks sizes and the vector; the bytes themselves are checked by core/pool.py."""
    if not msg.state or len(msg.state) > limits.max_pool_state:
        raise ConversionError(f"pool state of {len(msg.state)} bytes "
                              f"(1..{limits.max_pool_state} allowed)")
    return PoolState(vv_from_proto(msg.vv, limits), bytes(msg.state))


# --- handshake and membership --------------------------------------------------


def hello_to_proto(h: m.Hello) -> pb.HelloRequest:
    return pb.HelloRequest(
        protocol_version=h.protocol_version,
        software_version=h.software_version,
        swarm_key=h.swarm_key,
        config_fingerprint=h.config_fingerprint,
        model_fingerprint=h.model_fingerprint,
        node_id=h.node_id,
        incarnation=h.incarnation,
        name=h.name,
        address=h.address,
        nonce=h.nonce,
    )


def hello_from_proto(msg: pb.HelloRequest, limits: Limits = DEFAULT_LIMITS) -> m.Hello:
    return m.Hello(
        protocol_version=msg.protocol_version,
        software_version=_text(msg.software_version, "software version", limits),
        swarm_key=_id(msg.swarm_key, "swarm key", SWARM_KEY_BYTES),
        config_fingerprint=_blob(msg.config_fingerprint, "config fingerprint", limits),
        model_fingerprint=_blob(msg.model_fingerprint, "model fingerprint", limits),
        node_id=_id(msg.node_id, "node id"),
        incarnation=_count(msg.incarnation, "incarnation", limits),
        name=_text(msg.name, "name", limits),
        address=_text(msg.address, "address", limits),
        nonce=_blob(msg.nonce, "nonce", limits),
    )


def hello_reply_to_proto(r: m.HelloReply) -> pb.HelloReply:
    if not r.accepted:  # a refusal carries its reason and nothing that authenticates
        return pb.HelloReply(accepted=False, reason=r.reason, is_self=r.is_self)
    if r.hello is None:
        raise ValueError("an accepted HelloReply carries the responder's hello")
    return pb.HelloReply(accepted=True, reason=r.reason, hello=hello_to_proto(r.hello),
                         session=r.session, needs_proof=r.needs_proof)


def hello_reply_from_proto(msg: pb.HelloReply, limits: Limits = DEFAULT_LIMITS) -> m.HelloReply:
    reason = _text(msg.reason, "reason", limits)
    if not msg.accepted:
        return m.HelloReply(False, reason, is_self=msg.is_self)
    if not msg.HasField("hello"):
        raise ConversionError("accepted hello reply without the responder's hello")
    return m.HelloReply(True, reason, hello_from_proto(msg.hello, limits),
                        _blob(msg.session, "session", limits), msg.needs_proof)


def prove_to_proto(p: m.Prove) -> pb.ProveRequest:
    return pb.ProveRequest(session=p.session, proof=p.proof)


def prove_from_proto(msg: pb.ProveRequest, limits: Limits = DEFAULT_LIMITS) -> m.Prove:
    return m.Prove(_blob(msg.session, "session", limits), _blob(msg.proof, "proof", limits))


def prove_reply_to_proto(r: m.ProveReply) -> pb.ProveReply:
    return pb.ProveReply(accepted=r.accepted, reason=r.reason,
                         proof=r.proof if r.accepted else b"")


def prove_reply_from_proto(msg: pb.ProveReply, limits: Limits = DEFAULT_LIMITS) -> m.ProveReply:
    return m.ProveReply(msg.accepted, _text(msg.reason, "reason", limits),
                        _blob(msg.proof, "proof", limits))


def member_to_proto(info: m.MemberInfo) -> pb.MemberInfo:
    return pb.MemberInfo(
        node_id=info.node_id,
        name=info.name,
        address=info.address,
        state=_STATE_TO_PB[info.state],
        incarnation=info.incarnation,
    )


def member_from_proto(msg: pb.MemberInfo, limits: Limits = DEFAULT_LIMITS) -> m.MemberInfo:
    state = _STATE_FROM_PB.get(msg.state)
    if state is None:
        raise ConversionError(f"unknown member state {msg.state}")
    return m.MemberInfo(
        node_id=_id(msg.node_id, "member id"),
        name=_text(msg.name, "member name", limits),
        address=_text(msg.address, "member address", limits),
        state=state,
        incarnation=_count(msg.incarnation, "incarnation", limits),
    )


# --- frames ------------------------------------------------------------------


def frame_to_proto(frame: m.Frame, wire_bits: int = 8, sender: bytes | None = None) -> pb.Frame:
    match frame:
        case m.Batch(batch=b):
            return pb.Frame(batch=batch_to_proto(b, wire_bits, sender))
        case m.Vector():
            vec = pb.Vector(
                vv=vv_to_proto(frame.vv),
                applied_vv_digest=frame.applied_vv_digest,
                applied_total=frame.applied_total,
                partial=frame.partial,
                vv_digest=frame.vv_digest,
            )
            if frame.projection is not None:
                vec.projection = frame.projection
            return pb.Frame(vector=vec)
        case m.Want(ranges=ranges):
            return pb.Frame(want=pb.Want(ranges=_ranges_to_proto(ranges)))
        case m.Membership(members=members):
            rows = [member_to_proto(i) for i in members]
            return pb.Frame(membership=pb.Membership(members=rows))
        case m.Ping(nonce=nonce, sent_at=sent_at):
            return pb.Frame(ping=pb.Ping(nonce=nonce, sent_at=sent_at))
        case m.Ack(nonce=nonce, sent_at=sent_at):
            return pb.Frame(ack=pb.Ack(nonce=nonce, sent_at=sent_at))
        case m.Leave(node_id=node_id, incarnation=inc):
            return pb.Frame(leave=pb.Leave(node_id=node_id, incarnation=inc))
        case m.Drop():
            return pb.Frame(drop=pb.Drop())
    raise TypeError(f"not a frame: {type(frame).__name__}")


def frame_from_proto(msg: pb.Frame, wire_bits: int = 8, limits: Limits = DEFAULT_LIMITS,
                     sender: bytes | None = None) -> m.Frame:
    kind = msg.WhichOneof("kind")
    if kind == "batch":
        return m.Batch(batch_from_proto(msg.batch, wire_bits, limits, sender))
    if kind == "vector":
        v = msg.vector
        return m.Vector(
            vv=vv_from_proto(v.vv, limits),
            applied_vv_digest=_blob(v.applied_vv_digest, "vv digest", limits),
            projection=_finite(v.projection, "projection") if v.HasField("projection") else None,
            applied_total=_count(v.applied_total, "applied total", limits),
            partial=v.partial,
            vv_digest=_blob(v.vv_digest, "vv digest", limits),
        )
    if kind == "want":
        return m.Want(_ranges_from_proto(msg.want.ranges, limits))
    if kind == "membership":
        _many(msg.membership.members, "members", limits.max_members)
        return m.Membership(tuple(member_from_proto(i, limits) for i in msg.membership.members))
    if kind == "ping":
        return m.Ping(msg.ping.nonce, _finite(msg.ping.sent_at, "ping time"))
    if kind == "ack":
        return m.Ack(msg.ack.nonce, _finite(msg.ack.sent_at, "ack time"))
    if kind == "leave":
        return m.Leave(
            _id(msg.leave.node_id, "leaving node id"),
            _count(msg.leave.incarnation, "incarnation", limits),
        )
    if kind == "drop":
        return m.Drop()
    raise ConversionError("frame carries no known kind (empty, or from a newer protocol)")


def decode_frame(data: bytes, wire_bits: int = 8, limits: Limits = DEFAULT_LIMITS,
                 sender: bytes | None = None) -> m.Frame:
    """Serialized Frame bytes → domain frame; anything malformed raises ConversionError."""
    return frame_from_proto(parse(pb.Frame, data), wire_bits, limits, sender)
