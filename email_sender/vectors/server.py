"""A Qdrant server (REST or gRPC) as a VectorStore, through ``qdrant_client.AsyncQdrantClient``.

The same class runs qdrant-client's local mode (``location=":memory:"`` or ``path=...``), which
keeps everything in this process: handy for tests and one-off tools, but it has no payload
indexes, so ``ensure_collection`` records none there and ``collection_info`` lists none.

Every client call goes through :meth:`ServerVectorStore._client_errors`, the one place where
qdrant-client, httpx and gRPC errors become ours, each with the URL and a hint.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from email_sender.errors import (
    Conflict,
    DimensionMismatch,
    EmailSenderError,
    NotFound,
    VectorStoreAuthError,
    VectorStoreConnectionRefused,
    VectorStoreLocked,
    VectorStoreTimeout,
    VectorStoreUnavailable,
)
from email_sender.settings import mask_secrets
from email_sender.vectors.store import (
    SPARSE_VECTOR,
    CollectionInfo,
    Condition,
    MatchAny,
    MatchValue,
    Point,
    PreparedPoint,
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

_DIMENSION_ERROR = re.compile(r"expected dim: (\d+), got (\d+)")
_GRPC_REFUSED = {grpc.StatusCode.UNAVAILABLE}
_GRPC_TIMEOUT = {grpc.StatusCode.DEADLINE_EXCEEDED}
_GRPC_AUTH = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class ServerVectorStore:
    """Collections on a Qdrant server, or in qdrant-client's local mode."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        timeout: float = 10.0,
        location: str | None = None,
        path: Path | str | None = None,
        max_connections: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if sum(value is not None for value in (url, location, path)) != 1:
            raise ValueError("give exactly one of url, location or path")
        self.local = url is None
        self.backend = "qdrant-local" if self.local else "qdrant"
        # Named in error messages, which reach logs and API answers: never with a password.
        self.where = mask_secrets(url) if url else location or str(path)
        self.timeout = timeout
        # Each collection's (dimension, has a sparse vector), read once from the server.
        self._shapes: dict[str, tuple[int, bool]] = {}
        with self._client_errors():
            self._client = self._connect(
                url, api_key, prefer_grpc, location, path, max_connections, idle_timeout
            )
        logger.info("vector_store_opened", extra={"backend": self.backend, "url": self.where})

    def __repr__(self) -> str:
        return f"ServerVectorStore({self.where!r})"

    def _connect(
        self,
        url: str | None,
        api_key: str | None,
        prefer_grpc: bool,
        location: str | None,
        path: Path | str | None,
        max_connections: int | None,
        idle_timeout: float | None,
    ) -> AsyncQdrantClient:
        if url is None:
            return AsyncQdrantClient(location=location, path=str(path) if path else None)
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=idle_timeout,
        )
        return AsyncQdrantClient(
            url=url,
            api_key=api_key,
            prefer_grpc=prefer_grpc,
            timeout=max(1, round(self.timeout)),
            # The client's own check warns from a background thread; health checks probe instead.
            check_compatibility=False,
            limits=limits,
        )

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
        with self._client_errors(name):
            if not await self._client.collection_exists(name):
                await self._create(name, dimension, distance, sparse)
        info = await self.collection_info(name)
        if info.dimension != dimension:
            raise DimensionMismatch(dimension, info.dimension)
        if info.distance != distance:
            raise Conflict(
                f"collection {name!r} uses {info.distance} distance, not {distance}",
                collection=name,
            )
        await self._add_missing_indexes(name, indexes, info.payload_indexes)

    async def _create(self, name: str, dimension: int, distance: str, sparse: bool) -> None:
        params = models.VectorParams(size=dimension, distance=models.Distance(distance))
        idf = models.SparseVectorParams(modifier=models.Modifier.IDF)
        sparse_params = {SPARSE_VECTOR: idf} if sparse else None
        try:
            await self._client.create_collection(
                name, vectors_config=params, sparse_vectors_config=sparse_params
            )
        except UnexpectedResponse as exc:
            if exc.status_code != 409:  # created meanwhile by another node: fine
                raise
        logger.info(
            "collection_created",
            extra={
                "collection": name,
                "dimension": dimension,
                "distance": distance,
                "sparse": sparse,
            },
        )

    async def _add_missing_indexes(
        self, name: str, wanted: dict[str, str], present: dict[str, str]
    ) -> None:
        missing = {key: kind for key, kind in wanted.items() if key not in present}
        if self.local:
            if missing:
                logger.debug("payload_index_skipped", extra={"collection": name, "reason": "local"})
            return
        for key, kind in missing.items():
            with self._client_errors(name):
                await self._client.create_payload_index(
                    name, key, field_schema=models.PayloadSchemaType(kind), wait=True
                )
            logger.info(
                "payload_index_created", extra={"collection": name, "field": key, "type": kind}
            )

    async def collection_info(self, name: str) -> CollectionInfo:
        check_collection_name(name)
        with self._client_errors(name):
            info = await self._client.get_collection(name)
        params = info.config.params.vectors
        if isinstance(params, dict):
            params = params.get("")
        if params is None:
            raise Conflict(f"collection {name!r} has no default dense vector", collection=name)
        sparse = SPARSE_VECTOR in (info.config.params.sparse_vectors or {})
        self._shapes[name] = (params.size, sparse)
        indexes = {
            key: str(_enum_value(schema.data_type)) for key, schema in info.payload_schema.items()
        }
        return CollectionInfo(
            name=name,
            points_count=info.points_count or 0,
            dimension=params.size,
            distance=str(_enum_value(params.distance)),
            payload_indexes=indexes,
            backend=self.backend,
            sparse=sparse,
        )

    async def has_sparse(self, name: str) -> bool:
        _, sparse = await self._shape(name)
        return sparse

    async def list_collections(self) -> list[str]:
        with self._client_errors():
            response = await self._client.get_collections()
        return sorted(collection.name for collection in response.collections)

    async def upsert(self, name: str, points: Sequence[Point], wait: bool = True) -> None:
        dimension, sparse = await self._shape(name)
        prepared = prepare_points(points, dimension, sparse)
        if not prepared:
            return
        structs = [
            models.PointStruct(
                id=native_point_id(point.id), vector=_client_vector(point), payload=point.payload
            )
            for point in prepared
        ]
        with self._client_errors(name):
            await self._client.upsert(name, points=structs, wait=wait)

    async def search(
        self,
        name: str,
        vector: np.ndarray | Sequence[float],
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredPoint]:
        dimension, _ = await self._shape(name)
        query = as_vector(vector, dimension)
        with self._client_errors(name):
            response = await self._client.query_points(
                name,
                query=query.tolist(),
                limit=check_limit(limit),
                query_filter=_client_filter(parse_filter(filter)),
                with_payload=True,
            )
        return [
            ScoredPoint(str(hit.id), float(hit.score), dict(hit.payload or {}))
            for hit in response.points
        ]

    async def search_sparse(
        self,
        name: str,
        vector: SparseVector,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        with_terms: bool = False,
    ) -> list[ScoredPoint]:
        query = as_sparse(vector)
        _, sparse = await self._shape(name)
        if not sparse:
            raise no_sparse_vector(name)
        with self._client_errors(name):
            response = await self._client.query_points(
                name,
                query=_client_sparse(query),
                using=SPARSE_VECTOR,
                limit=check_limit(limit),
                query_filter=_client_filter(parse_filter(filter)),
                with_payload=True,
                with_vectors=[SPARSE_VECTOR] if with_terms else False,
            )
        return [
            ScoredPoint(
                str(hit.id), float(hit.score), dict(hit.payload or {}), _sparse_of(hit.vector)
            )
            for hit in response.points
        ]

    async def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[Point]:
        wanted: list[models.ExtendedPointId] = [native_point_id(point_id(value)) for value in ids]
        check_collection_name(name)
        if not wanted:
            return []
        with self._client_errors(name):
            records = await self._client.retrieve(
                name, wanted, with_payload=True, with_vectors=with_vectors
            )
        return [_point(record, with_vectors) for record in records]

    async def delete(self, name: str, ids: Sequence[str], wait: bool = True) -> None:
        doomed: list[models.ExtendedPointId] = [native_point_id(point_id(value)) for value in ids]
        check_collection_name(name)
        if not doomed:
            return
        with self._client_errors(name):
            await self._client.delete(
                name, points_selector=models.PointIdsList(points=doomed), wait=wait
            )

    async def count(self, name: str) -> int:
        check_collection_name(name)
        with self._client_errors(name):
            result = await self._client.count(name, exact=True)
        return result.count

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
        check_collection_name(name)
        start = page_offset(offset)
        with self._client_errors(name):
            records, following = await self._client.scroll(
                name,
                limit=check_limit(limit),
                offset=None if start is None else native_point_id(start),
                with_payload=True,
                with_vectors=with_vectors,
            )
        points = [_point(record, with_vectors) for record in records]
        return points, None if following is None else point_id(following)

    async def delete_collection(self, name: str) -> None:
        check_collection_name(name)
        self._shapes.pop(name, None)
        with self._client_errors(name):
            deleted = await self._client.delete_collection(name)
        if deleted:
            logger.info("collection_deleted", extra={"collection": name})

    async def optimize(self, name: str) -> None:
        """Nothing to do: a Qdrant server runs its optimizers in the background."""
        check_collection_name(name)

    async def close(self) -> None:
        with self._client_errors():
            await self._client.close()
        logger.info("vector_store_closed", extra={"backend": self.backend})

    async def _shape(self, name: str) -> tuple[int, bool]:
        if name not in self._shapes:
            await self.collection_info(name)
        return self._shapes[name]

    @contextlib.contextmanager
    def _client_errors(self, collection: str | None = None) -> Iterator[None]:
        """Translate qdrant-client, httpx and gRPC errors into ours, with the URL and a hint."""
        try:
            yield
        except EmailSenderError:
            raise
        except UnexpectedResponse as exc:
            raise self._http_error(exc.status_code, _response_text(exc), collection) from exc
        except ResponseHandlingException as exc:
            raise self._transport_error(exc.source) from exc
        except grpc.RpcError as exc:
            raise self._grpc_error(exc, collection) from exc
        except (httpx.TransportError, OSError) as exc:
            raise self._transport_error(exc) from exc
        except (ValueError, RuntimeError) as exc:
            if not self.local:
                raise VectorStoreUnavailable(
                    f"Qdrant at {self.where} failed: {exc}", url=self.where
                ) from exc
            # Local mode reports its problems as plain ValueError / RuntimeError.
            raise self._local_error(exc, collection) from exc

    def _http_error(self, status: int | None, text: str, collection: str | None) -> Exception:
        if status in (401, 403):
            return VectorStoreAuthError(
                f"Qdrant at {self.where} refused the credentials (HTTP {status}): "
                "check qdrant.api_key",
                url=self.where,
                status=status,
            )
        if status == 404 and collection is not None:
            return NotFound(f"collection {collection!r} does not exist", collection=collection)
        dimension = _DIMENSION_ERROR.search(text)
        if dimension:
            self._shapes.pop(collection or "", None)
            return DimensionMismatch(int(dimension.group(2)), int(dimension.group(1)))
        if status == 408 or status == 504:
            return self._timeout()
        return VectorStoreUnavailable(
            f"Qdrant at {self.where} answered HTTP {status}: {text[:300]}",
            url=self.where,
            status=status,
        )

    def _transport_error(self, exc: BaseException) -> Exception:
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return self._timeout()
        if isinstance(exc, httpx.ConnectError | ConnectionError):
            return self._refused()
        return VectorStoreUnavailable(f"Qdrant at {self.where} failed: {exc}", url=self.where)

    def _grpc_error(self, exc: grpc.RpcError, collection: str | None) -> Exception:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        if code in _GRPC_REFUSED:
            return self._refused()
        if code in _GRPC_TIMEOUT:
            return self._timeout()
        if code in _GRPC_AUTH:
            return self._http_error(401, str(details), collection)
        if code == grpc.StatusCode.NOT_FOUND:
            return self._http_error(404, str(details), collection)
        return self._http_error(None, f"gRPC {code}: {details}", collection)

    def _local_error(self, exc: Exception, collection: str | None) -> Exception:
        text = str(exc)
        if "already accessed by another instance" in text:
            return VectorStoreLocked(
                f"the local Qdrant store at {self.where} is in use by another process: "
                "stop it or use another path",
                path=self.where,
            )
        if text.startswith("Collection") and text.endswith("not found"):
            return self._http_error(404, text, collection)
        return self._http_error(400, text, collection)

    def _refused(self) -> VectorStoreConnectionRefused:
        return VectorStoreConnectionRefused(
            f"cannot connect to Qdrant at {self.where}: is it running and is qdrant.url right?",
            url=self.where,
        )

    def _timeout(self) -> VectorStoreTimeout:
        return VectorStoreTimeout(
            f"Qdrant at {self.where} did not answer within {self.timeout:g}s: "
            "check its load or raise qdrant.timeout",
            url=self.where,
        )


def _response_text(exc: UnexpectedResponse) -> str:
    try:
        return exc.content.decode("utf-8", "replace")
    except AttributeError:
        return str(exc)


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _client_vector(point: PreparedPoint) -> models.VectorStruct:
    if point.sparse is None:
        return point.vector.tolist()
    return {"": point.vector.tolist(), SPARSE_VECTOR: _client_sparse(point.sparse)}


def _client_sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _sparse_of(vectors: Any) -> SparseVector | None:
    """The sparse vector among a point's vectors as the client gives them, if it has one."""
    found = vectors.get(SPARSE_VECTOR) if isinstance(vectors, dict) else None
    if not isinstance(found, models.SparseVector):
        return None
    return as_sparse(SparseVector(tuple(found.indices), tuple(found.values)))


def _point(record: models.Record, with_vector: bool) -> Point:
    if not with_vector:
        return Point(str(record.id), None, dict(record.payload or {}))
    stored: Any = record.vector
    dense = stored.get("") if isinstance(stored, dict) else stored
    vector = np.asarray(dense, dtype=np.float32)
    return Point(str(record.id), vector, dict(record.payload or {}), _sparse_of(stored))


def _client_filter(conditions: list[Condition]) -> models.Filter | None:
    if not conditions:
        return None
    must: list[models.Condition] = [_client_condition(condition) for condition in conditions]
    return models.Filter(must=must)


def _client_condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, MatchValue):
        return models.FieldCondition(
            key=condition.key, match=models.MatchValue(value=condition.value)
        )
    if isinstance(condition, MatchAny):
        return models.FieldCondition(
            key=condition.key, match=models.MatchAny(any=list(condition.values))
        )
    bounds = models.Range(gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte)
    return models.FieldCondition(key=condition.key, range=bounds)
