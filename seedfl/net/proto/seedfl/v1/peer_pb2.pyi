from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_STATE_UNSPECIFIED: _ClassVar[MemberState]
    MEMBER_STATE_ALIVE: _ClassVar[MemberState]
    MEMBER_STATE_SUSPECT: _ClassVar[MemberState]
    MEMBER_STATE_DEAD: _ClassVar[MemberState]
    MEMBER_STATE_LEFT: _ClassVar[MemberState]
MEMBER_STATE_UNSPECIFIED: MemberState
MEMBER_STATE_ALIVE: MemberState
MEMBER_STATE_SUSPECT: MemberState
MEMBER_STATE_DEAD: MemberState
MEMBER_STATE_LEFT: MemberState

class HelloRequest(_message.Message):
    __slots__ = ("protocol_version", "software_version", "swarm_key", "config_fingerprint", "model_fingerprint", "node_id", "incarnation", "name", "address", "proof", "nonce")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SWARM_KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    software_version: str
    swarm_key: bytes
    config_fingerprint: bytes
    model_fingerprint: bytes
    node_id: bytes
    incarnation: int
    name: str
    address: str
    proof: bytes
    nonce: bytes
    def __init__(self, protocol_version: _Optional[int] = ..., software_version: _Optional[str] = ..., swarm_key: _Optional[bytes] = ..., config_fingerprint: _Optional[bytes] = ..., model_fingerprint: _Optional[bytes] = ..., node_id: _Optional[bytes] = ..., incarnation: _Optional[int] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., proof: _Optional[bytes] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("accepted", "reason", "hello", "session", "needs_proof", "is_self")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_PROOF_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    hello: HelloRequest
    session: bytes
    needs_proof: bool
    is_self: bool
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., hello: _Optional[_Union[HelloRequest, _Mapping]] = ..., session: _Optional[bytes] = ..., needs_proof: _Optional[bool] = ..., is_self: _Optional[bool] = ...) -> None: ...

class ProveRequest(_message.Message):
    __slots__ = ("session", "proof")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    proof: bytes
    def __init__(self, session: _Optional[bytes] = ..., proof: _Optional[bytes] = ...) -> None: ...

class ProveReply(_message.Message):
    __slots__ = ("accepted", "reason", "proof")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    proof: bytes
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., proof: _Optional[bytes] = ...) -> None: ...

class UpdateBatch(_message.Message):
    __slots__ = ("origin", "first_seq", "codes", "count", "slots")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    origin: bytes
    first_seq: int
    codes: bytes
    count: int
    slots: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, origin: _Optional[bytes] = ..., first_seq: _Optional[int] = ..., codes: _Optional[bytes] = ..., count: _Optional[int] = ..., slots: _Optional[_Iterable[int]] = ...) -> None: ...

class VersionEntry(_message.Message):
    __slots__ = ("origin", "count")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    origin: bytes
    count: int
    def __init__(self, origin: _Optional[bytes] = ..., count: _Optional[int] = ...) -> None: ...

class VersionVector(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[VersionEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[VersionEntry, _Mapping]]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("vv", "applied_vv_digest", "projection", "applied_total", "partial", "vv_digest")
    VV_FIELD_NUMBER: _ClassVar[int]
    APPLIED_VV_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    VV_DIGEST_FIELD_NUMBER: _ClassVar[int]
    vv: VersionVector
    applied_vv_digest: bytes
    projection: float
    applied_total: int
    partial: bool
    vv_digest: bytes
    def __init__(self, vv: _Optional[_Union[VersionVector, _Mapping]] = ..., applied_vv_digest: _Optional[bytes] = ..., projection: _Optional[float] = ..., applied_total: _Optional[int] = ..., partial: _Optional[bool] = ..., vv_digest: _Optional[bytes] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("origin", "start", "end")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    origin: bytes
    start: int
    end: int
    def __init__(self, origin: _Optional[bytes] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Want(_message.Message):
    __slots__ = ("ranges",)
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[Range]
    def __init__(self, ranges: _Optional[_Iterable[_Union[Range, _Mapping]]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("ranges",)
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[Range]
    def __init__(self, ranges: _Optional[_Iterable[_Union[Range, _Mapping]]] = ...) -> None: ...

class MemberInfo(_message.Message):
    __slots__ = ("node_id", "name", "address", "state", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    name: str
    address: str
    state: MemberState
    incarnation: int
    def __init__(self, node_id: _Optional[bytes] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[_Union[MemberState, str]] = ..., incarnation: _Optional[int] = ...) -> None: ...

class Membership(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[MemberInfo]
    def __init__(self, members: _Optional[_Iterable[_Union[MemberInfo, _Mapping]]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("nonce", "sent_at")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    sent_at: float
    def __init__(self, nonce: _Optional[int] = ..., sent_at: _Optional[float] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("nonce", "sent_at")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    sent_at: float
    def __init__(self, nonce: _Optional[int] = ..., sent_at: _Optional[float] = ...) -> None: ...

class Leave(_message.Message):
    __slots__ = ("node_id", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    incarnation: int
    def __init__(self, node_id: _Optional[bytes] = ..., incarnation: _Optional[int] = ...) -> None: ...

class Drop(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Frame(_message.Message):
    __slots__ = ("batch", "vector", "want", "membership", "ping", "ack", "leave", "drop")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    WANT_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    batch: UpdateBatch
    vector: Vector
    want: Want
    membership: Membership
    ping: Ping
    ack: Ack
    leave: Leave
    drop: Drop
    def __init__(self, batch: _Optional[_Union[UpdateBatch, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., want: _Optional[_Union[Want, _Mapping]] = ..., membership: _Optional[_Union[Membership, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., leave: _Optional[_Union[Leave, _Mapping]] = ..., drop: _Optional[_Union[Drop, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("at_least", "chunk_bytes", "resume_from")
    AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    at_least: VersionVector
    chunk_bytes: int
    resume_from: int
    def __init__(self, at_least: _Optional[_Union[VersionVector, _Mapping]] = ..., chunk_bytes: _Optional[int] = ..., resume_from: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("index", "total", "data", "sha256", "vv", "snapshot_sha256")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    VV_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SHA256_FIELD_NUMBER: _ClassVar[int]
    index: int
    total: int
    data: bytes
    sha256: bytes
    vv: VersionVector
    snapshot_sha256: bytes
    def __init__(self, index: _Optional[int] = ..., total: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ..., vv: _Optional[_Union[VersionVector, _Mapping]] = ..., snapshot_sha256: _Optional[bytes] = ...) -> None: ...

class AccumulatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PoolAccumulators(_message.Message):
    __slots__ = ("vv", "state")
    VV_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    vv: VersionVector
    state: bytes
    def __init__(self, vv: _Optional[_Union[VersionVector, _Mapping]] = ..., state: _Optional[bytes] = ...) -> None: ...
