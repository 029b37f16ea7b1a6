"""Per-point checksums and an order-independent collection digest.

A point checksum is SHA-256 over, in this order:

1. the point id as text (UTF-8),
2. the vector as float32 little-endian bytes,
3. the payload as ``json.dumps(payload, sort_keys=True, separators=(",", ":"),
   ensure_ascii=False)`` encoded as UTF-8,
4. only when the point has a sparse vector: the bytes ``"sparse"``, its indices (ascending) as
   uint32 little-endian, then its values as float32 little-endian.

A point without a sparse vector keeps the checksum it had before sparse vectors existed.

The same point therefore has the same checksum in any store, on any machine, so a migration can
be verified point by point. The collection digest combines the point checksums by adding them as
256-bit integers (mod 2**256) and hashing that sum with the point count: the result does not
depend on the order points are read in, and unlike XOR a duplicated point does not cancel out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from email_sender.vectors.store import SparseVector

_MODULUS = 1 << 256
_SPARSE_MARK = b"sparse"


def point_checksum(
    point_id: object,
    vector: np.ndarray | Sequence[float],
    payload: Mapping[str, Any],
    sparse: SparseVector | None = None,
) -> str:
    """The hex SHA-256 of one point: id text, float32 LE vector bytes, canonical payload JSON,
    and the sparse vector when there is one."""
    digest = hashlib.sha256()
    digest.update(str(point_id).encode("utf-8"))
    digest.update(np.asarray(vector, dtype="<f4").tobytes())
    digest.update(canonical_json(payload).encode("utf-8"))
    if sparse is not None:
        digest.update(sparse_bytes(sparse))
    return digest.hexdigest()


def sparse_bytes(sparse: SparseVector) -> bytes:
    """What a sparse vector adds to a point checksum."""
    return (
        _SPARSE_MARK
        + np.asarray(sparse.indices, dtype="<u4").tobytes()
        + np.asarray(sparse.values, dtype="<f4").tobytes()
    )


def canonical_json(payload: Mapping[str, Any]) -> str:
    """The payload as sorted-key, compact JSON: the form hashed into a point checksum."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class DigestAccumulator:
    """Fold point checksums into a collection digest while streaming over a collection."""

    def __init__(self) -> None:
        self._sum = 0
        self.count = 0

    def add(self, checksum: str) -> None:
        """Add one point checksum (64 hex digits)."""
        if len(checksum) != 64:
            raise ValueError(f"not a SHA-256 hex digest: {checksum!r}")
        self._sum = (self._sum + int(checksum, 16)) % _MODULUS
        self.count += 1

    def add_point(
        self,
        point_id: object,
        vector: np.ndarray | Sequence[float],
        payload: Mapping[str, Any],
        sparse: SparseVector | None = None,
    ) -> str:
        """Checksum one point, add it, and return its checksum."""
        checksum = point_checksum(point_id, vector, payload, sparse)
        self.add(checksum)
        return checksum

    def hexdigest(self) -> str:
        """The digest of everything added so far."""
        digest = hashlib.sha256()
        digest.update(self.count.to_bytes(8, "big"))
        digest.update(self._sum.to_bytes(32, "big"))
        return digest.hexdigest()


def collection_digest(checksums: Iterable[str]) -> str:
    """Combine point checksums into one digest that does not depend on their order."""
    accumulator = DigestAccumulator()
    for checksum in checksums:
        accumulator.add(checksum)
    return accumulator.hexdigest()
