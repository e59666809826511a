"""proto ⇄ domain conversion: round trips, sign1 packing, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.net import convert
from seedfl.net.convert import ConversionError, Limits
from seedfl.net.proto.seedfl.v1 import peer_pb2 as pb
from seedfl.swarm import messages as m

ids = st.binary(min_size=16, max_size=16)
u64 = st.integers(0, 2**64 - 1)
counters = st.integers(0, 2**40)
text = st.text(max_size=40)
blob = st.binary(max_size=32)
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw: st.DrawFn, wire_bits: int = 8) -> UpdateBatch:
    n = draw(st.integers(1, 70))
    hi = 1 if wire_bits == 1 else 255
    codes = bytes(draw(st.lists(st.integers(0, hi), min_size=n, max_size=n)))
    slots = draw(st.none() | st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n).map(tuple))
    return UpdateBatch(draw(ids), draw(counters), codes, slots)


vvs = st.dictionaries(ids, st.integers(0, 2**40), max_size=5).map(VersionVector)
ranges = st.tuples(ids, st.integers(0, 2**30), st.integers(1, 2**30)).map(
    lambda r: (r[0], r[1], r[1] + r[2])
)
hellos = st.builds(
    m.Hello,
    protocol_version=st.integers(0, 2**32 - 1),
    software_version=text,
    swarm_key=ids,
    config_fingerprint=blob,
    model_fingerprint=blob,
    node_id=ids,
    incarnation=counters,
    name=text,
    address=text,
    nonce=blob,
)
members = st.builds(
    m.MemberInfo,
    node_id=ids,
    name=text,
    address=text,
    state=st.sampled_from(m.MEMBER_STATES),
    incarnation=counters,
)
frames = st.one_of(
    batches().map(m.Batch),
    st.builds(
        m.Vector,
        vv=vvs,
        applied_vv_digest=blob,
        projection=st.none() | finite,
        applied_total=counters,
    ),
    st.lists(ranges, max_size=5).map(lambda rs: m.Want(tuple(rs))),
    st.lists(members, max_size=5).map(lambda ms: m.Membership(tuple(ms))),
    st.builds(m.Ping, nonce=u64, sent_at=finite),
    st.builds(m.Ack, nonce=u64, sent_at=finite),
    st.builds(m.Leave, node_id=ids, incarnation=counters),
    st.just(m.Drop()),
)


@given(frames)
def test_frame_round_trip(frame: m.Frame) -> None:
    wire = convert.frame_to_proto(frame).SerializeToString()
    assert convert.decode_frame(wire) == frame


@given(batches(wire_bits=1))
def test_sign1_round_trip_packs_eight_per_byte(batch: UpdateBatch) -> None:
    msg = convert.batch_to_proto(batch, wire_bits=1)
    assert len(msg.codes) == (len(batch) + 7) // 8
    assert msg.count == len(batch)
    assert convert.batch_from_proto(msg, wire_bits=1) == batch


def test_sign1_bit_order_is_lsb_first() -> None:
    batch = UpdateBatch(b"\x01" * 16, 5, bytes([1, 0, 0, 0, 0, 0, 0, 0, 1, 1]))
    msg = convert.batch_to_proto(batch, wire_bits=1)
    assert msg.codes == bytes([0b0000_0001, 0b0000_0011])
    with pytest.raises(ValueError):
        convert.batch_to_proto(UpdateBatch(b"\x01" * 16, 0, b"\x02"), wire_bits=1)


@given(hellos, st.booleans(), text)
def test_hello_round_trip(hello: m.Hello, accepted: bool, reason: str) -> None:
    req = pb.HelloRequest.FromString(convert.hello_to_proto(hello).SerializeToString())
    assert convert.hello_from_proto(req) == hello
    reply = m.HelloReply(True, reason, hello, b"\x07" * 16, accepted)
    assert convert.hello_reply_from_proto(convert.hello_reply_to_proto(reply)) == reply
    # A refusal keeps its reason and drops everything else on the way out.
    refused = convert.hello_reply_to_proto(m.HelloReply(False, reason, hello, b"\x07" * 16, True))
    assert refused == pb.HelloReply(accepted=False, reason=reason)
    prove = m.ProveReply(accepted, reason, b"\x08" * 32)
    got = convert.prove_reply_from_proto(convert.prove_reply_to_proto(prove))
    assert got == (prove if accepted else m.ProveReply(False, reason))
    assert convert.prove_from_proto(convert.prove_to_proto(m.Prove(b"s", b"p"))) == \
        m.Prove(b"s", b"p")


@given(st.lists(ranges, max_size=5))
def test_fetch_round_trip(rs: list[m.Range]) -> None:
    req = m.Want(tuple(rs))
    assert convert.fetch_from_proto(convert.fetch_to_proto(req)) == req


def _batch(**fields: object) -> pb.UpdateBatch:
    base: dict[str, object] = dict(origin=b"\x07" * 16, first_seq=3, codes=b"\x01\x02", count=2)
    base.update(fields)
    return pb.UpdateBatch(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("msg", "wire_bits", "needle"),
    [
        (_batch(origin=b"\x07" * 15), 8, "origin must be 16 bytes"),
        (_batch(count=3), 8, "count 3 but 2 code bytes"),
        (_batch(count=0, codes=b""), 8, "no updates"),
        (_batch(slots=[1]), 8, "1 slots"),
        (_batch(slots=[1, 70000]), 8, "slot beyond"),
        (_batch(first_seq=2**60), 8, "sane bound"),
        (_batch(count=9, codes=b"\x01"), 1, "sign1 batch count 9"),
        (_batch(count=2, codes=b"\x07"), 1, "padding"),
        (_batch(count=5000, codes=bytes(5000)), 8, "over the limit 4096"),
    ],
)
def test_malformed_batches_are_refused(msg: pb.UpdateBatch, wire_bits: int, needle: str) -> None:
    with pytest.raises(ConversionError) as info:
        convert.batch_from_proto(msg, wire_bits, Limits(max_batch=4096))
    assert needle in info.value.reason


def test_other_malformed_frames() -> None:
    cases = [
        (pb.Frame(), "no known kind"),
        (pb.Frame(leave=pb.Leave(node_id=b"x", incarnation=1)), "16 bytes"),
        (pb.Frame(ping=pb.Ping(nonce=1, sent_at=float("nan"))), "finite"),
        (pb.Frame(want=pb.Want(ranges=[pb.Range(origin=b"\x01" * 16, start=5, end=5)])), "empty"),
        (
            pb.Frame(membership=pb.Membership(members=[pb.MemberInfo(node_id=b"\x01" * 16)])),
            "unknown member state",
        ),
        (
            pb.Frame(
                vector=pb.Vector(
                    vv=pb.VersionVector(entries=[pb.VersionEntry(origin=b"\x01" * 16, count=1)] * 2)
                )
            ),
            "twice",
        ),
    ]
    for msg, needle in cases:
        with pytest.raises(ConversionError) as info:
            convert.decode_frame(msg.SerializeToString())
        assert needle in info.value.reason, (msg, info.value.reason)
    with pytest.raises(ConversionError, match="swarm key"):
        convert.hello_from_proto(pb.HelloRequest(swarm_key=b"short", node_id=b"\x01" * 16))
    with pytest.raises(ConversionError, match="responder"):
        convert.hello_reply_from_proto(pb.HelloReply(accepted=True))


def test_unknown_oneof_from_a_newer_peer_is_refused() -> None:
    # Field 99, length-delimited (tag varint 99 << 3 | 2 = 0x9A 0x06), one byte long:
    # what a future frame kind looks like to this version.
    unknown = bytes([0x9A, 0x06, 0x01, 0x07])
    with pytest.raises(ConversionError, match="no known kind"):
        convert.decode_frame(unknown)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from([1, 8]))
def test_random_bytes_only_raise_conversion_error(data: bytes, wire_bits: int) -> None:
    try:
        frame = convert.decode_frame(data, wire_bits)
    except ConversionError:
        return
    # Whatever was accepted re-encodes to something that decodes the same.
    again = convert.frame_to_proto(frame, wire_bits).SerializeToString()
    assert convert.decode_frame(again, wire_bits) == frame


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames, st.data())
def test_mutated_frames_only_raise_conversion_error(frame: m.Frame, data: st.DataObject) -> None:
    wire = bytearray(convert.frame_to_proto(frame).SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        if not wire:
            break
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, len(wire) - 1))
        if op == "flip":
            wire[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del wire[i:]
        else:
            wire.insert(i, data.draw(st.integers(0, 255)))
    try:
        decoded = convert.decode_frame(bytes(wire))
    except ConversionError:
        return
    again = convert.frame_to_proto(decoded).SerializeToString()
    assert convert.decode_frame(again) == decoded


@pytest.mark.parametrize(
    ("pool_slots", "slots", "needle"),
    [
        (0, [1, 2], "carry none"),
        (64, None, "lacks pool slots"),
        (64, [3, 64], "slot 64 is outside the pool of 64"),
    ],
)
def test_slots_against_the_swarms_pool_are_refused(
    pool_slots: int, slots: list[int] | None, needle: str
) -> None:
    msg = _batch() if slots is None else _batch(slots=slots)
    with pytest.raises(ConversionError) as info:
        convert.batch_from_proto(msg, 8, Limits(pool_slots=pool_slots))
    assert needle in info.value.reason
    # The same frame on a gossip stream is refused the same way.
    with pytest.raises(ConversionError):
        convert.decode_frame(pb.Frame(batch=msg).SerializeToString(), 8,
                             Limits(pool_slots=pool_slots))


def test_slots_that_fit_the_pool_pass() -> None:
    got = convert.batch_from_proto(_batch(slots=[0, 63]), 8, Limits(pool_slots=64))
    assert got.slots == (0, 63)
    assert convert.batch_from_proto(_batch(), 8, Limits(pool_slots=0)).slots is None
    # No rule (tools, tests): anything a batch may carry.
    assert convert.batch_from_proto(_batch(slots=[9, 65535]), 8).slots == (9, 65535)


def test_pool_state_round_trip_and_limits() -> None:
    vv = VersionVector({b"\x01" * 16: 7, b"\x02" * 16: 3})
    state = convert.PoolState(vv, bytes(range(256)) * 2)
    msg = convert.pool_state_to_proto(state)
    back = convert.pool_state_from_proto(pb.PoolAccumulators.FromString(msg.SerializeToString()))
    assert back == state
    with pytest.raises(ConversionError, match="pool state of 0 bytes"):
        convert.pool_state_from_proto(pb.PoolAccumulators(vv=msg.vv))
    with pytest.raises(ConversionError, match="pool state of 513 bytes"):
        convert.pool_state_from_proto(pb.PoolAccumulators(state=bytes(513)),
                                      Limits(max_pool_state=512))


def test_own_batches_travel_without_origin_or_count() -> None:
    me, other = b"\x01" * 16, b"\x02" * 16
    own = UpdateBatch(me, 7, b"\x05")
    msg = convert.batch_to_proto(own, 8, sender=me)
    assert msg.origin == b"" and msg.count == 0
    # A one-update frame of our own: tags + first_seq + one code byte.
    assert pb.Frame(batch=msg).ByteSize() == 7
    assert convert.batch_from_proto(msg, 8, sender=me) == own
    relayed = convert.batch_to_proto(UpdateBatch(other, 7, b"\x05"), 8, sender=me)
    assert relayed.origin == other
    assert convert.batch_from_proto(relayed, 8, sender=me).origin == other
    # Outside a Gossip stream (Fetch) nobody is implied: an empty origin is malformed.
    with pytest.raises(ConversionError, match="origin must be 16 bytes"):
        convert.batch_from_proto(msg, 8)
    # sign1 packs codes, so its count must travel.
    packed = convert.batch_to_proto(UpdateBatch(me, 0, b"\x01\x00\x01"), 1, sender=me)
    assert packed.count == 3
    assert convert.batch_from_proto(packed, 1, sender=me).codes == b"\x01\x00\x01"
    frame = convert.frame_to_proto(m.Batch(own), 8, sender=me).SerializeToString()
    assert convert.decode_frame(frame, 8, sender=me) == m.Batch(own)
