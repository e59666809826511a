from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerRow(_message.Message):
    __slots__ = ("node_id", "name", "address", "state", "last_seen_s", "rtt_ms", "updates_from", "lag", "connected")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FROM_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    name: str
    address: str
    state: str
    last_seen_s: float
    rtt_ms: float
    updates_from: int
    lag: int
    connected: bool
    def __init__(self, node_id: _Optional[bytes] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., last_seen_s: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., updates_from: _Optional[int] = ..., lag: _Optional[int] = ..., connected: _Optional[bool] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("node_id", "name", "software_version", "protocol_version", "swarm_key", "config_fingerprint", "state", "uptime_s", "address", "own_seq", "applied_total", "vv_digest", "version_vector", "divergence", "loss_ema", "steps_per_s", "payload_bytes_in", "payload_bytes_out", "total_bytes_in", "total_bytes_out", "updates_sent", "updates_received", "updates_duplicate", "updates_rejected", "peers", "catchup_state", "catchup_progress", "applied_vv_digest", "model_params", "trainable_params", "metrics", "recovery", "catchup_method", "pool_digest", "pool_vv_digest", "diverged", "links", "active_view")
    class VersionVectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class UpdatesRejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SWARM_KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OWN_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VV_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_VECTOR_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    LOSS_EMA_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    UPDATES_SENT_FIELD_NUMBER: _ClassVar[int]
    UPDATES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    UPDATES_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    UPDATES_REJECTED_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_STATE_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_VV_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_METHOD_FIELD_NUMBER: _ClassVar[int]
    POOL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    POOL_VV_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VIEW_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    name: str
    software_version: str
    protocol_version: int
    swarm_key: bytes
    config_fingerprint: bytes
    state: str
    uptime_s: float
    address: str
    own_seq: int
    applied_total: int
    vv_digest: bytes
    version_vector: _containers.ScalarMap[str, int]
    divergence: float
    loss_ema: float
    steps_per_s: float
    payload_bytes_in: int
    payload_bytes_out: int
    total_bytes_in: int
    total_bytes_out: int
    updates_sent: int
    updates_received: int
    updates_duplicate: int
    updates_rejected: _containers.ScalarMap[str, int]
    peers: _containers.RepeatedCompositeFieldContainer[PeerRow]
    catchup_state: str
    catchup_progress: float
    applied_vv_digest: bytes
    model_params: int
    trainable_params: int
    metrics: _containers.ScalarMap[str, float]
    recovery: str
    catchup_method: str
    pool_digest: bytes
    pool_vv_digest: bytes
    diverged: str
    links: int
    active_view: int
    def __init__(self, node_id: _Optional[bytes] = ..., name: _Optional[str] = ..., software_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., swarm_key: _Optional[bytes] = ..., config_fingerprint: _Optional[bytes] = ..., state: _Optional[str] = ..., uptime_s: _Optional[float] = ..., address: _Optional[str] = ..., own_seq: _Optional[int] = ..., applied_total: _Optional[int] = ..., vv_digest: _Optional[bytes] = ..., version_vector: _Optional[_Mapping[str, int]] = ..., divergence: _Optional[float] = ..., loss_ema: _Optional[float] = ..., steps_per_s: _Optional[float] = ..., payload_bytes_in: _Optional[int] = ..., payload_bytes_out: _Optional[int] = ..., total_bytes_in: _Optional[int] = ..., total_bytes_out: _Optional[int] = ..., updates_sent: _Optional[int] = ..., updates_received: _Optional[int] = ..., updates_duplicate: _Optional[int] = ..., updates_rejected: _Optional[_Mapping[str, int]] = ..., peers: _Optional[_Iterable[_Union[PeerRow, _Mapping]]] = ..., catchup_state: _Optional[str] = ..., catchup_progress: _Optional[float] = ..., applied_vv_digest: _Optional[bytes] = ..., model_params: _Optional[int] = ..., trainable_params: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., recovery: _Optional[str] = ..., catchup_method: _Optional[str] = ..., pool_digest: _Optional[bytes] = ..., pool_vv_digest: _Optional[bytes] = ..., diverged: _Optional[str] = ..., links: _Optional[int] = ..., active_view: _Optional[int] = ...) -> None: ...
