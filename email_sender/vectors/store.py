"""The VectorStore interface, its data types, and the one filter format every adapter reads.

Adapters: :class:`~email_sender.vectors.edge.EdgeVectorStore` (Qdrant Edge, in-process) and
:class:`~email_sender.vectors.server.ServerVectorStore` (a Qdrant server, or qdrant-client's
local mode). Both pass the same contract tests.

Filter format
-------------
A filter is a flat mapping of payload field to condition; all conditions must hold (AND)::

    {
        "tags": "invoice",                            # match one value (str, int or bool)
        "to": ["a@example.com", "b@example.com"],     # match any of these (all str or all int)
        "created_at": {"gte": 1700000000, "lt": 1800000000},  # numeric range: gt, gte, lt, lte
    }

A field whose payload value is a list matches when any element matches. ``None`` or ``{}`` means
no filter. Anything else is refused with :class:`~email_sender.errors.ValidationError` naming the
field, before the store is asked.

Vectors are checked against the collection's dimension before any write or search: a mismatch
raises :class:`~email_sender.errors.DimensionMismatch` and nothing is stored.

Vectors
-------
A point's dense vector is the collection's default (unnamed) vector, as it has always been. A
collection made with ``sparse=True`` also holds a sparse vector named :data:`SPARSE_VECTOR` with
Qdrant's IDF modifier: the BM25 term weights of the text (see :mod:`email_sender.vectors.sparse`),
searched with :meth:`VectorStore.search_sparse`. A collection made before that has no sparse
vector: it still answers dense searches, and ``email-sender vectors upgrade`` adds one.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from email_sender.errors import Conflict, DimensionMismatch, ValidationError

DISTANCES = ("Cosine", "Dot", "Euclid", "Manhattan")
PAYLOAD_INDEX_TYPES = ("keyword", "integer", "float", "bool", "datetime", "text", "uuid", "geo")
RANGE_KEYS = frozenset({"gt", "gte", "lt", "lte"})
MAX_INTEGER_ID = 2**64 - 1
MAX_SPARSE_INDEX = 2**32 - 1
SPARSE_VECTOR = "bm25"
FLOAT32_MAX = float(np.finfo(np.float32).max)

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Term weights by term index, indices ascending and unique (see :func:`as_sparse`)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(slots=True)
class Point:
    """One stored point. ``vector`` is None when read without vectors; ``sparse`` is None when
    read without vectors or when the point has no sparse vector."""

    id: str
    vector: np.ndarray | list[float] | None
    payload: dict[str, Any] = field(default_factory=dict)
    sparse: SparseVector | None = None


@dataclass(frozen=True, slots=True)
class ScoredPoint:
    """A search hit: higher score is closer, whatever the distance. ``sparse`` is the point's
    sparse vector when a sparse search was asked ``with_terms``."""

    id: str
    score: float
    payload: dict[str, Any]
    sparse: SparseVector | None = None


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    points_count: int
    dimension: int
    distance: str
    payload_indexes: dict[str, str]
    backend: str
    sparse: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The shape the API and the CLI show: Qdrant's collection fields, plus the backend."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MatchValue:
    key: str
    value: str | int | bool


@dataclass(frozen=True, slots=True)
class MatchAny:
    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Range:
    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Condition = MatchValue | MatchAny | Range


@runtime_checkable
class VectorStore(Protocol):
    """Where vectors live. Every method may raise a VectorError subclass, nothing else."""

    backend: str

    async def ensure_collection(
        self,
        name: str,
        dimension: int,
        distance: str = "Cosine",
        payload_indexes: Mapping[str, str] | None = None,
        sparse: bool = False,
    ) -> None:
        """Create the collection when absent and add any missing payload index.

        ``sparse`` gives a new collection the sparse vector; an existing collection without it
        is left as it is (``collection_info(name).sparse`` tells), never refused."""
        ...

    async def collection_info(self, name: str) -> CollectionInfo: ...

    async def has_sparse(self, name: str) -> bool:
        """Whether the collection holds the sparse vector (cached: no round trip per call)."""
        ...

    async def list_collections(self) -> list[str]: ...

    async def upsert(self, name: str, points: Sequence[Point], wait: bool = True) -> None: ...

    async def search(
        self,
        name: str,
        vector: np.ndarray | Sequence[float],
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredPoint]: ...

    async def search_sparse(
        self,
        name: str,
        vector: SparseVector,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        with_terms: bool = False,
    ) -> list[ScoredPoint]:
        """The points whose sparse vectors score highest against ``vector`` (a dot product with
        IDF weights); a point sharing no term with it is not returned. ``with_terms`` returns
        each hit's sparse vector too. Conflict when the collection has no sparse vector."""
        ...

    async def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[Point]: ...

    async def delete(self, name: str, ids: Sequence[str], wait: bool = True) -> None: ...

    async def count(self, name: str) -> int: ...

    def scroll(
        self, name: str, batch_size: int = 256, with_vectors: bool = True
    ) -> AsyncIterator[list[Point]]:
        """Every point of the collection, in batches (pages of :meth:`scroll_page`)."""
        ...

    async def scroll_page(
        self, name: str, limit: int = 10, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[Point], str | None]:
        """One page of at most ``limit`` points in the store's id order, from the point id
        ``offset`` on (included; None: from the first), and the id the next page starts at
        (None after the last page), as Qdrant's scroll answers."""
        ...

    async def delete_collection(self, name: str) -> None: ...

    async def optimize(self, name: str) -> None:
        """Build indexes and merge segments where the backend needs to be told; else nothing."""
        ...

    async def close(self) -> None: ...


def parse_filter(spec: Mapping[str, Any] | None) -> list[Condition]:
    """Validate a filter in the module's format and return its conditions."""
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise ValidationError("filter", "must be an object of field: condition")
    return [_condition(str(key), value) for key, value in spec.items()]


def _condition(key: str, value: Any) -> Condition:
    where = f"filter.{key}"
    if not key:
        raise ValidationError("filter", "field names must not be empty")
    if isinstance(value, bool | int | str):
        return MatchValue(key, value)
    if isinstance(value, list | tuple):
        return _match_any(where, key, value)
    if isinstance(value, Mapping):
        return _range(where, key, value)
    raise ValidationError(
        where, "must be a string, integer, boolean, a list of them, or a {gte, lte} range"
    )


def _match_any(where: str, key: str, values: Sequence[Any]) -> MatchAny:
    if not values:
        raise ValidationError(where, "the list of values must not be empty")
    if all(isinstance(v, str) for v in values):
        return MatchAny(key, tuple(str(v) for v in values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return MatchAny(key, tuple(int(v) for v in values))
    raise ValidationError(where, "list values must be all strings or all integers")


def _range(where: str, key: str, bounds: Mapping[str, Any]) -> Range:
    unknown = set(bounds) - RANGE_KEYS
    if unknown or not bounds:
        raise ValidationError(where, "a range takes gt, gte, lt and/or lte")
    for bound, number in bounds.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ValidationError(f"{where}.{bound}", "must be a number")
        if not math.isfinite(number):
            raise ValidationError(f"{where}.{bound}", "must be finite")
    return Range(key, **{bound: float(number) for bound, number in bounds.items()})


def check_collection_name(name: str) -> str:
    """Refuse names that are not safe as a directory name and a URL segment."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or ".." in name:
        raise ValidationError(
            "collection", f"{name!r} is not a valid name (letters, digits, '_', '-', '.')"
        )
    return name


def check_distance(distance: str) -> str:
    if distance not in DISTANCES:
        raise ValidationError("distance", f"{distance!r} is not one of {', '.join(DISTANCES)}")
    return distance


def check_payload_indexes(indexes: Mapping[str, str] | None) -> dict[str, str]:
    checked = dict(indexes or {})
    for field_name, kind in checked.items():
        if kind not in PAYLOAD_INDEX_TYPES:
            raise ValidationError(
                f"payload_indexes.{field_name}",
                f"{kind!r} is not one of {', '.join(PAYLOAD_INDEX_TYPES)}",
            )
    return checked


def check_dimension(dimension: int) -> int:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ValidationError("dimension", "must be a positive integer")
    return dimension


def point_id(value: object) -> str:
    """The canonical text form of a point id: an unsigned 64-bit integer or a UUID, as Qdrant
    allows. The service's own points are emails, whose ids are UUIDs; integer ids come from
    collections made by other tools and must migrate all the same."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_INTEGER_ID:
            return str(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        if int(value) <= MAX_INTEGER_ID:
            return str(int(value))
    else:
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            pass
    raise ValidationError("id", f"{value!r} is not an unsigned 64-bit integer or a UUID")


def page_offset(value: object) -> str | None:
    """A scroll offset in canonical form: a point id, or None for the first page."""
    if value is None:
        return None
    try:
        return point_id(value)
    except ValidationError as exc:
        raise ValidationError("offset", exc.reason) from None


def native_point_id(canonical: str) -> int | str:
    """What Qdrant's clients take for a canonical id: an int for integer ids, else the UUID."""
    return int(canonical) if canonical.isdigit() else canonical


def as_vector(vector: np.ndarray | Sequence[float] | None, expected: int) -> np.ndarray:
    """The vector as a flat float32 array of the collection's size, or DimensionMismatch."""
    if vector is None:
        raise ValidationError("vector", "is required")
    try:
        # Read as float64 first: a value beyond float32's range must be refused, not cast.
        wide = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError("vector", "must be a list of numbers") from exc
    if wide.ndim == 1 and wide.size and np.isfinite(wide).all():
        if np.abs(wide).max() > np.finfo(np.float32).max:
            raise ValidationError("vector", "has a value beyond the float32 range")
    array = wide.astype(np.float32)
    if array.ndim != 1:
        raise ValidationError("vector", f"must be one-dimensional, got shape {array.shape}")
    if array.shape[0] != expected:
        raise DimensionMismatch(array.shape[0], expected)
    if not np.isfinite(array).all():
        raise ValidationError("vector", "must contain only finite numbers")
    return array


def as_sparse(vector: SparseVector | Mapping[str, Any] | None) -> SparseVector:
    """A checked sparse vector, indices sorted: from a SparseVector or ``{indices, values}``."""
    if isinstance(vector, SparseVector):
        indices, values = list(vector.indices), list(vector.values)
    elif isinstance(vector, Mapping) and set(vector) == {"indices", "values"}:
        indices, values = vector["indices"], vector["values"]
    else:
        raise ValidationError("sparse", "must be an object with indices and values")
    if not isinstance(indices, list | tuple) or not isinstance(values, list | tuple):
        raise ValidationError("sparse", "indices and values must be lists")
    if len(indices) != len(values):
        raise ValidationError("sparse", "indices and values must have the same length")
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValidationError("sparse.indices", "must be integers")
        if not 0 <= index <= MAX_SPARSE_INDEX:
            raise ValidationError("sparse.indices", "must be between 0 and 2**32 - 1")
    if len(set(indices)) != len(indices):
        raise ValidationError("sparse.indices", "must not repeat")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("sparse.values", "must be numbers")
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise ValidationError("sparse.values", "must be finite float32 numbers")
    ordered = sorted(zip(indices, values, strict=True))
    return SparseVector(
        tuple(int(index) for index, _ in ordered),
        tuple(float(np.float32(value)) for _, value in ordered),
    )


def no_sparse_vector(name: str) -> Conflict:
    """What a sparse search on a collection without the sparse vector answers."""
    return Conflict(
        f"collection {name!r} has no sparse vector: email-sender vectors upgrade adds it",
        collection=name,
    )


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError("limit", "must be a positive integer")
    return limit


@dataclass(frozen=True, slots=True)
class PreparedPoint:
    id: str
    vector: np.ndarray
    payload: dict[str, Any]
    sparse: SparseVector | None


def prepare_points(
    points: Sequence[Point], dimension: int, sparse: bool = False
) -> list[PreparedPoint]:
    """Check every point before anything is written, so a bad batch stores nothing.

    A sparse vector is refused by a collection without one (``sparse`` False): storing the
    point without it would break the checksum its payload carries."""
    prepared = []
    for point in points:
        if point.sparse is not None and not sparse:
            raise ValidationError(
                "sparse",
                f"point {point.id}: the collection has no sparse vector "
                "(email-sender vectors upgrade adds it)",
            )
        prepared.append(
            PreparedPoint(
                point_id(point.id),
                as_vector(point.vector, dimension),
                dict(point.payload or {}),
                None if point.sparse is None else as_sparse(point.sparse),
            )
        )
    return prepared
