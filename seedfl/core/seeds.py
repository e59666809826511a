"""Seeds of updates and of the FedKSeed pool (DESIGN §2 and §5).

An update (origin, seq) has the seed
``blake2b(swarm_key ‖ origin ‖ seq_le64, digest_size=8, person=b"seedfl/seed/v1")``
read as a little-endian uint64. A pool slot k has
``blake2b(swarm_key ‖ k_le64, digest_size=8, person=b"seedfl/pool/v1")``.
Both are pure functions of their arguments; every machine derives the same
numbers, which is what lets a peer regenerate another peer's direction.
"""

from __future__ import annotations

import hashlib

SWARM_KEY_BYTES = 16
NODE_ID_BYTES = 16
_MAX_U64 = (1 << 64) - 1


def _u64_le(value: int) -> bytes:
    if not 0 <= value <= _MAX_U64:
        raise ValueError(f"value {value} does not fit in an unsigned 64-bit integer")
    return value.to_bytes(8, "little")


def swarm_key_of(fingerprint: bytes) -> bytes:
    """The swarm key: the first 16 bytes of the swarm config fingerprint."""
    if len(fingerprint) < SWARM_KEY_BYTES:
        raise ValueError("a config fingerprint has at least 16 bytes")
    return bytes(fingerprint[:SWARM_KEY_BYTES])


def update_seed(swarm_key: bytes, origin: bytes, seq: int) -> int:
    """Seed S of update (origin, seq) in the swarm with this key (DESIGN §2)."""
    if len(swarm_key) != SWARM_KEY_BYTES:
        raise ValueError(f"swarm key must be {SWARM_KEY_BYTES} bytes, got {len(swarm_key)}")
    if len(origin) != NODE_ID_BYTES:
        raise ValueError(f"origin must be {NODE_ID_BYTES} bytes, got {len(origin)}")
    h = hashlib.blake2b(
        swarm_key + origin + _u64_le(seq), digest_size=8, person=b"seedfl/seed/v1"
    )
    return int.from_bytes(h.digest(), "little")


def pool_seed(swarm_key: bytes, k: int) -> int:
    """Seed of slot k of the FedKSeed pool (DESIGN §5)."""
    if len(swarm_key) != SWARM_KEY_BYTES:
        raise ValueError(f"swarm key must be {SWARM_KEY_BYTES} bytes, got {len(swarm_key)}")
    h = hashlib.blake2b(swarm_key + _u64_le(k), digest_size=8, person=b"seedfl/pool/v1")
    return int.from_bytes(h.digest(), "little")


def pool_seeds(swarm_key: bytes, size: int) -> list[int]:
    """All K pool seeds, slot order."""
    return [pool_seed(swarm_key, k) for k in range(size)]


def uniform_pool_index(swarm_key: bytes, origin: bytes, seq: int, size: int) -> int:
    """Uniform pool slot of update (origin, seq): derived from its own seed."""
    if size <= 0:
        raise ValueError("pool size must be positive")
    return update_seed(swarm_key, origin, seq) % size
