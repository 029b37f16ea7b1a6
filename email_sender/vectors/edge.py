"""Qdrant Edge (``qdrant-edge-py``, in-process) as a VectorStore: one shard per collection.

Layout: ``<path>/<collection>/`` is one Edge shard (its ``edge_config.json`` holds the vector
size and distance), and ``<path>/.lock`` is held with ``flock`` for the life of the store, so a
second store on the same directory, in this process or another, fails at once with
:class:`~email_sender.errors.VectorStoreLocked` naming the holder's pid.

Durability: the shard keeps a write-ahead log, so an acknowledged write survives the process
dying; with ``wait=True`` the shard is also flushed to its segments before the call returns.
Edge has no background optimizer: payload and HNSW indexes are built only when
:meth:`EdgeVectorStore.optimize` runs.

Edge calls are synchronous. Writes, scrolls and optimisation run in a worker thread. A search on
a small shard takes ~0.2 ms inline against ~0.3 ms through a thread, so searches run inline up to
``inline_search_max_points`` points and in a thread above that (an unindexed 50k-point shard
takes ~3.5 ms, which would stall the event loop).

Copying between two Edge stores (what ``vectors migrate`` does edge → edge) skips the conversion
to :class:`Point` and back: :meth:`EdgeVectorStore.copy_collection_to` copies a whole shard's
files into a store that lacks the collection, and :meth:`EdgeVectorStore.scroll_native` with
:meth:`EdgeVectorStore.upsert_native` copy page by page into one that has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import qdrant_edge as qe

from email_sender.errors import (
    Conflict,
    DimensionMismatch,
    EmailSenderError,
    NotFound,
    ValidationError,
    VectorStoreLocked,
    VectorStoreUnavailable,
)
from email_sender.vectors.store import (
    PAYLOAD_INDEX_TYPES,
    SPARSE_VECTOR,
    CollectionInfo,
    Condition,
    MatchAny,
    MatchValue,
    Point,
    PreparedPoint,
    Range,
    ScoredPoint,
    SparseVector,
    as_sparse,
    as_vector,
    check_collection_name,
    check_dimension,
    check_distance,
    check_limit,
    check_payload_indexes,
    native_point_id,
    no_sparse_vector,
    page_offset,
    parse_filter,
    point_id,
    prepare_points,
)

logger = logging.getLogger(__name__)

BACKEND = "qdrant-edge"
LOCK_FILE = ".lock"
CONFIG_FILE = "edge_config.json"
# Where copy_collection_to writes a shard before renaming it into place: not a collection.
STAGING_DIR = ".copying"
COPY_CHUNK = 4 << 20
INLINE_SEARCH_MAX_POINTS = 10_000
INLINE_RETRIEVE_MAX_IDS = 100

_ENGINE_DIMENSION_ERROR = re.compile(r"expected dim: (\d+), got (\d+)")


@dataclass(frozen=True, slots=True)
class EdgePage:
    """A page of points as the engine holds them (see :meth:`EdgeVectorStore.scroll_native`):
    their canonical ids and the engine's points, ready for another Edge shard as they are."""

    ids: list[str]
    points: list[qe.Point]


@dataclass(slots=True)
class _Collection:
    shard: qe.EdgeShard
    dimension: int
    distance: str
    points_count: int
    sparse: bool


class EdgeVectorStore:
    """Collections as Qdrant Edge shards under one directory, owned by this process."""

    backend = BACKEND

    def __init__(
        self, path: Path, *, inline_search_max_points: int = INLINE_SEARCH_MAX_POINTS
    ) -> None:
        self.path = Path(path)
        self.inline_search_max_points = inline_search_max_points
        self._lock_handle: IO[str] | None = _acquire_directory_lock(self.path)
        self._collections: dict[str, _Collection] = {}
        self._open_lock = asyncio.Lock()
        logger.info("vector_store_opened", extra={"backend": BACKEND, "path": str(self.path)})

    def __repr__(self) -> str:
        return f"EdgeVectorStore({str(self.path)!r})"

    async def ensure_collection(
        self,
        name: str,
        dimension: int,
        distance: str = "Cosine",
        payload_indexes: Mapping[str, str] | None = None,
        sparse: bool = False,
    ) -> None:
        check_collection_name(name)
        check_dimension(dimension)
        check_distance(distance)
        indexes = check_payload_indexes(payload_indexes)
        self._check_open()
        async with self._open_lock:
            if name not in self._collections and not self._exists(name):
                with self._engine_errors(name):
                    self._collections[name] = await asyncio.to_thread(
                        self._create, name, dimension, distance, sparse
                    )
                logger.info(
                    "collection_created",
                    extra={
                        "collection": name,
                        "dimension": dimension,
                        "distance": distance,
                        "sparse": sparse,
                    },
                )
        collection = await self._collection(name)
        if collection.dimension != dimension:
            raise DimensionMismatch(dimension, collection.dimension)
        if collection.distance != distance:
            raise Conflict(
                f"collection {name!r} uses {collection.distance} distance, not {distance}",
                collection=name,
            )
        with self._engine_errors(name):
            await asyncio.to_thread(_add_missing_indexes, name, collection.shard, indexes)

    async def collection_info(self, name: str) -> CollectionInfo:
        collection = await self._collection(name)
        with self._engine_errors(name):
            info = collection.shard.info()
        collection.points_count = info.points_count
        return CollectionInfo(
            name=name,
            points_count=info.points_count,
            dimension=collection.dimension,
            distance=collection.distance,
            payload_indexes=_index_types(info.payload_schema),
            backend=BACKEND,
            sparse=collection.sparse,
        )

    async def has_sparse(self, name: str) -> bool:
        return (await self._collection(name)).sparse

    async def list_collections(self) -> list[str]:
        if not self.path.is_dir():
            return []
        entries = self.path.iterdir()
        return sorted(entry.name for entry in entries if (entry / CONFIG_FILE).is_file())

    async def upsert(self, name: str, points: Sequence[Point], wait: bool = True) -> None:
        collection = await self._collection(name)
        prepared = prepare_points(points, collection.dimension, collection.sparse)
        if not prepared:
            return
        with self._engine_errors(name):
            collection.points_count = await asyncio.to_thread(
                _write_points, collection.shard, prepared, wait
            )

    async def search(
        self,
        name: str,
        vector: np.ndarray | Sequence[float],
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredPoint]:
        collection = await self._collection(name)
        query = as_vector(vector, collection.dimension)
        request = qe.SearchRequest(
            query=qe.Query.Nearest(query.tolist()),
            limit=check_limit(limit),
            filter=_edge_filter(parse_filter(filter)),
            with_payload=True,
            with_vector=False,
        )
        return await self._search(name, collection, request)

    async def search_sparse(
        self,
        name: str,
        vector: SparseVector,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        with_terms: bool = False,
    ) -> list[ScoredPoint]:
        collection = await self._collection(name)
        query = as_sparse(vector)
        if not collection.sparse:
            raise no_sparse_vector(name)
        request = qe.SearchRequest(
            query=qe.Query.Nearest(_edge_sparse(query), using=SPARSE_VECTOR),
            limit=check_limit(limit),
            filter=_edge_filter(parse_filter(filter)),
            with_payload=True,
            with_vector=[SPARSE_VECTOR] if with_terms else False,
        )
        return await self._search(name, collection, request)

    async def _search(
        self, name: str, collection: _Collection, request: qe.SearchRequest
    ) -> list[ScoredPoint]:
        with self._engine_errors(name):
            if collection.points_count <= self.inline_search_max_points:
                hits = collection.shard.search(request)
            else:
                hits = await asyncio.to_thread(collection.shard.search, request)
        return [
            ScoredPoint(
                str(hit.id), float(hit.score), dict(hit.payload or {}), _sparse_of(hit.vector)
            )
            for hit in hits
        ]

    async def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[Point]:
        collection = await self._collection(name)
        wanted: list[qe.PointId] = [native_point_id(point_id(value)) for value in ids]
        if not wanted:
            return []
        with self._engine_errors(name):
            if len(wanted) <= INLINE_RETRIEVE_MAX_IDS:
                records = collection.shard.retrieve(wanted, True, with_vectors)
            else:
                records = await asyncio.to_thread(
                    collection.shard.retrieve, wanted, True, with_vectors
                )
        return [_point(record, with_vectors) for record in records]

    async def delete(self, name: str, ids: Sequence[str], wait: bool = True) -> None:
        collection = await self._collection(name)
        doomed: list[qe.PointId] = [native_point_id(point_id(value)) for value in ids]
        if not doomed:
            return
        with self._engine_errors(name):
            collection.points_count = await asyncio.to_thread(
                _delete_points, collection.shard, doomed, wait
            )

    async def count(self, name: str) -> int:
        collection = await self._collection(name)
        with self._engine_errors(name):
            collection.points_count = collection.shard.count(qe.CountRequest(exact=True))
        return collection.points_count

    async def scroll(
        self, name: str, batch_size: int = 256, with_vectors: bool = True
    ) -> AsyncIterator[list[Point]]:
        offset: str | None = None
        while True:
            points, offset = await self.scroll_page(name, batch_size, offset, with_vectors)
            if points:
                yield points
            if offset is None:
                return

    async def scroll_page(
        self, name: str, limit: int = 10, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[Point], str | None]:
        start = page_offset(offset)
        collection = await self._collection(name)
        request = qe.ScrollRequest(
            offset=None if start is None else native_point_id(start),
            limit=check_limit(limit),
            with_payload=True,
            with_vector=with_vectors,
        )
        with self._engine_errors(name):
            records, following = await asyncio.to_thread(collection.shard.scroll, request)
        points = [_point(record, with_vectors) for record in records]
        return points, None if following is None else point_id(following)

    async def scroll_native(self, name: str, batch_size: int = 1000) -> AsyncIterator[EdgePage]:
        """Every point of the collection, in pages the engine reads and another Edge shard
        writes as they are (no float32 check, no id parsing: they were checked on the way in)."""
        collection = await self._collection(name)
        offset: qe.PointId | None = None
        while True:
            with self._engine_errors(name):
                page, offset = await asyncio.to_thread(
                    _native_page, collection.shard, offset, check_limit(batch_size)
                )
            if page.ids:
                yield page
            if offset is None:
                return

    async def upsert_native(
        self, name: str, points: Sequence[qe.Point], wait: bool = True
    ) -> None:
        """Write points read by :meth:`scroll_native` from a shard of the same vector config."""
        collection = await self._collection(name)
        if not points:
            return
        with self._engine_errors(name):
            collection.points_count = await asyncio.to_thread(
                _write_native, collection.shard, list(points), wait
            )

    async def copy_collection_to(self, target: EdgeVectorStore, name: str) -> int:
        """Copy the collection's shard files into ``target``, which must not have it; answer
        the points the copy holds.

        The copy is the collection as it is: points, payload indexes and HNSW graph, so the
        target needs no optimisation after it. The source shard is flushed, and every other
        call on it waits while its files are read (a call already running when the copy began
        must not write: ``vectors migrate`` owns both stores). The copy is written under
        ``<target>/.copying/`` then renamed into place: an interrupted copy leaves no
        collection behind, and the next copy clears what it left."""
        check_collection_name(name)
        self._check_open()
        target._check_open()
        if target._exists(name):
            raise Conflict(f"collection {name!r} already exists in {target!r}", collection=name)
        async with self._open_lock, target._open_lock:
            if not self._exists(name):
                raise NotFound(f"collection {name!r} does not exist", collection=name)
            # Out of the table, the collection is reached only through the open lock: every
            # other call waits for the copy, and no write lands while the files are read.
            collection = self._collections.pop(name, None)
            try:
                with self._engine_errors(name):
                    if collection is None:
                        collection = await asyncio.to_thread(self._load, name)
                    await asyncio.to_thread(collection.shard.flush)
                    await asyncio.to_thread(
                        _copy_shard, self.path / name, target.path / STAGING_DIR, target.path
                    )
            finally:
                if collection is not None:
                    self._collections[name] = collection
            with target._engine_errors(name):
                copied = await asyncio.to_thread(target._load, name)
            target._collections[name] = copied
        logger.info(
            "collection_copied",
            extra={"collection": name, "points": copied.points_count, "target": str(target.path)},
        )
        return copied.points_count

    async def delete_collection(self, name: str) -> None:
        check_collection_name(name)
        self._check_open()
        async with self._open_lock:
            collection = self._collections.pop(name, None)
            with self._engine_errors(name):
                if collection is not None:
                    await asyncio.to_thread(collection.shard.close)
                if self._exists(name):
                    await asyncio.to_thread(shutil.rmtree, self.path / name)
                    logger.info("collection_deleted", extra={"collection": name})

    async def optimize(self, name: str) -> None:
        collection = await self._collection(name)
        with self._engine_errors(name):
            changed = await asyncio.to_thread(collection.shard.optimize)
        logger.info("collection_optimized", extra={"collection": name, "changed": changed})

    async def close(self) -> None:
        async with self._open_lock:
            collections, self._collections = self._collections, {}
            for name, collection in collections.items():
                with self._engine_errors(name):
                    await asyncio.to_thread(_flush_and_close, collection.shard)
            if self._lock_handle is not None:
                self._lock_handle.close()  # closing the descriptor releases the flock
                self._lock_handle = None
                logger.info("vector_store_closed", extra={"backend": BACKEND})

    async def _collection(self, name: str) -> _Collection:
        collection = self._collections.get(check_collection_name(name))
        if collection is not None:
            return collection
        self._check_open()
        async with self._open_lock:
            if name not in self._collections:
                if not self._exists(name):
                    raise NotFound(f"collection {name!r} does not exist", collection=name)
                with self._engine_errors(name):
                    self._collections[name] = await asyncio.to_thread(self._load, name)
            return self._collections[name]

    def _check_open(self) -> None:
        if self._lock_handle is None:
            raise VectorStoreUnavailable(f"the Qdrant Edge store at {self.path} is closed")

    def _exists(self, name: str) -> bool:
        return (self.path / name / CONFIG_FILE).is_file()

    def _create(self, name: str, dimension: int, distance: str, sparse: bool) -> _Collection:
        params = qe.EdgeVectorParams(size=dimension, distance=getattr(qe.Distance, distance))
        sparse_params = (
            {SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if sparse else None
        )
        config = qe.EdgeConfig(vectors=params, sparse_vectors=sparse_params)
        shard = qe.EdgeShard.create(str(self.path / name), config)
        return _Collection(shard, dimension, distance, 0, sparse)

    def _load(self, name: str) -> _Collection:
        directory = self.path / name
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        params = config["vectors"][""]
        sparse = SPARSE_VECTOR in (config.get("sparse_vectors") or {})
        shard = qe.EdgeShard.load(str(directory))
        points_count = shard.info().points_count
        return _Collection(
            shard, int(params["size"]), str(params["distance"]), points_count, sparse
        )

    @contextlib.contextmanager
    def _engine_errors(self, name: str) -> Iterator[None]:
        """Translate the engine's untyped exceptions into ours, naming the shard."""
        try:
            yield
        except EmailSenderError:
            raise
        except OSError as exc:
            raise VectorStoreUnavailable(
                f"Qdrant Edge store at {self.path / name}: {exc.strerror or exc}"
            ) from exc
        except Exception as exc:
            raise _translate(exc, self.path / name) from exc


def _translate(exc: Exception, where: Path) -> EmailSenderError:
    text = str(exc)
    dimension = _ENGINE_DIMENSION_ERROR.search(text)
    if dimension:
        return DimensionMismatch(int(dimension.group(2)), int(dimension.group(1)))
    if "WouldBlock" in text:
        return VectorStoreLocked(
            f"the Qdrant Edge shard at {where} is open in another process: "
            "stop it or use another data dir"
        )
    if isinstance(exc, TypeError | ValueError):
        return ValidationError("point", text)
    return VectorStoreUnavailable(f"Qdrant Edge shard at {where} failed: {text}")


def _acquire_directory_lock(path: Path) -> IO[str]:
    """Hold ``<path>/.lock`` exclusively, or raise VectorStoreLocked naming the holder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_FILE, "a+", encoding="ascii")  # held until close()
    except OSError as exc:
        raise VectorStoreUnavailable(
            f"cannot open the Qdrant Edge store at {path}: {exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise VectorStoreLocked(
            f"the Qdrant Edge store at {path} is in use by another process (pid {holder}): "
            "stop it, or point qdrant.path / --data-dir elsewhere",
            path=str(path),
            holder_pid=holder,
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _add_missing_indexes(name: str, shard: qe.EdgeShard, wanted: dict[str, str]) -> None:
    present = _index_types(shard.info().payload_schema)
    missing = {key: kind for key, kind in wanted.items() if key not in present}
    for key, kind in missing.items():
        schema = getattr(qe.PayloadSchemaType, kind.capitalize())
        shard.update(qe.UpdateOperation.create_field_index(key, schema))
        logger.info("payload_index_created", extra={"collection": name, "field": key, "type": kind})
    for key, kind in wanted.items():
        if key in present and present[key] != kind:
            logger.warning(
                "payload_index_type_differs",
                extra={"collection": name, "field": key, "type": present[key], "wanted": kind},
            )
    if missing:
        shard.flush()


def _index_types(schema: Mapping[str, qe.PayloadIndexInfo]) -> dict[str, str]:
    return {key: _schema_name(info.data_type) for key, info in schema.items()}


def _schema_name(data_type: qe.PayloadSchemaType) -> str:
    # The binding's enums are not Python enums: no .name, so compare against each member.
    for kind in PAYLOAD_INDEX_TYPES:
        if data_type == getattr(qe.PayloadSchemaType, kind.capitalize()):
            return kind
    return str(data_type).rsplit(".", 1)[-1].lower()


def _write_points(shard: qe.EdgeShard, prepared: list[PreparedPoint], wait: bool) -> int:
    points = [
        qe.Point(native_point_id(point.id), _edge_vector(point), point.payload)
        for point in prepared
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    if wait:
        shard.flush()
    return shard.info().points_count


def _native_page(
    shard: qe.EdgeShard, offset: qe.PointId | None, limit: int
) -> tuple[EdgePage, qe.PointId | None]:
    request = qe.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=True)
    records, following = shard.scroll(request)
    page = EdgePage(
        [str(record.id) for record in records],
        [qe.Point(record.id, _stored(record), record.payload) for record in records],
    )
    return page, following


def _stored(record: qe.Record) -> qe.Vector:
    if record.vector is None:  # the request asks for vectors: the engine always gives them
        raise VectorStoreUnavailable(f"the engine returned point {record.id} without its vector")
    return record.vector


def _write_native(shard: qe.EdgeShard, points: list[qe.Point], wait: bool) -> int:
    shard.update(qe.UpdateOperation.upsert_points(points))
    if wait:
        shard.flush()
    return shard.info().points_count


def _copy_shard(shard_dir: Path, staging_root: Path, target_root: Path) -> None:
    """Copy a closed shard's directory to ``target_root`` through ``staging_root``."""
    staging = staging_root / shard_dir.name
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted copy left
    staging_root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(shard_dir, staging, copy_function=_copy_keeping_holes)
    os.replace(staging, target_root / shard_dir.name)
    with contextlib.suppress(OSError):
        staging_root.rmdir()


def _copy_keeping_holes(source: str, target: str) -> None:
    """Copy a file's data but not its holes: a shard preallocates its index files (~200 MB
    apparent for 22 MB of data at 5,000 points), which a plain copy would write out as zeros."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        size = os.fstat(reader.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(reader.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole from here to the end
                break
            offset = os.lseek(reader.fileno(), start, os.SEEK_HOLE)
            _copy_range(reader.fileno(), writer.fileno(), start, offset)
        writer.truncate(size)
    shutil.copystat(source, target)


def _copy_range(reader: int, writer: int, start: int, end: int) -> None:
    while start < end:
        chunk = os.pread(reader, min(COPY_CHUNK, end - start), start)
        if not chunk:
            return
        written = os.pwrite(writer, chunk, start)
        start += written


def _delete_points(shard: qe.EdgeShard, ids: list[qe.PointId], wait: bool) -> int:
    shard.update(qe.UpdateOperation.delete_points(ids))
    if wait:
        shard.flush()
    return shard.info().points_count


def _flush_and_close(shard: qe.EdgeShard) -> None:
    shard.flush()
    shard.close()


def _edge_vector(point: PreparedPoint) -> qe.Vector:
    if point.sparse is None:
        return point.vector.tolist()
    return {"": point.vector.tolist(), SPARSE_VECTOR: _edge_sparse(point.sparse)}


def _edge_sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _sparse_of(vectors: Any) -> SparseVector | None:
    """The sparse vector among a point's vectors as the engine gives them, if it has one."""
    found = vectors.get(SPARSE_VECTOR) if isinstance(vectors, dict) else None
    if not isinstance(found, qe.SparseVector):
        return None
    return as_sparse(SparseVector(tuple(found.indices), tuple(found.values)))


def _point(record: qe.Record, with_vector: bool) -> Point:
    if not with_vector:
        return Point(str(record.id), None, dict(record.payload or {}))
    stored: Any = record.vector
    dense = stored[""] if isinstance(stored, dict) else stored
    vector = np.asarray(dense, dtype=np.float32)
    return Point(str(record.id), vector, dict(record.payload or {}), _sparse_of(stored))


def _edge_filter(conditions: list[Condition]) -> qe.Filter | None:
    if not conditions:
        return None
    return qe.Filter(must=[_edge_condition(condition) for condition in conditions])


def _edge_condition(condition: Condition) -> qe.FieldCondition:
    if isinstance(condition, MatchValue):
        return qe.FieldCondition(condition.key, match=qe.MatchValue(condition.value))
    if isinstance(condition, MatchAny):
        values: list[str] | list[int] = list(condition.values)  # type: ignore[assignment]
        return qe.FieldCondition(condition.key, match=qe.MatchAny(values))
    assert isinstance(condition, Range)
    bounds = qe.RangeFloat(gte=condition.gte, gt=condition.gt, lte=condition.lte, lt=condition.lt)
    return qe.FieldCondition(condition.key, range=bounds)
