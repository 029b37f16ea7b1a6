"""Helpers for vector tests: a node with the vector managers, and a store that can be made to fail.

``FlakyStore`` wraps a real store (Qdrant Edge here) and refuses every call while ``down`` is
set, the way an unreachable Qdrant server does; ``poison`` ids make an upsert fail the way a
point the store refuses does. Everything else is the real store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np

from email_sender.errors import ValidationError, VectorStoreConnectionRefused
from email_sender.service import Service
from email_sender.vectors.factory import build_vector_store
from email_sender.vectors.managers import QdrantManager
from email_sender.vectors.processor import VectorProcessor
from email_sender.vectors.store import (
    CollectionInfo,
    Point,
    ScoredPoint,
    SparseVector,
    VectorStore,
)


def fast_processor(node: Service) -> VectorProcessor:
    processor: VectorProcessor = node.get("vector_processor")
    processor.options.backoff_base = 0.05
    processor.options.outage_backoff_max = 0.2
    processor.options.poll_interval = 0.05
    processor.options.max_attempts = 3
    return processor


class FlakyStore:
    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.where = "http://qdrant.test:6333"
        self.down = False
        self.poison: set[str] = set()

    def _check(self) -> None:
        if self.down:
            raise VectorStoreConnectionRefused(
                f"connection refused by the vector store at {self.where}: is Qdrant running?"
            )

    async def ensure_collection(
        self, name: str, dimension: int, distance: str = "Cosine",
        payload_indexes: Mapping[str, str] | None = None, sparse: bool = False,
    ) -> None:
        self._check()
        await self.inner.ensure_collection(name, dimension, distance, payload_indexes, sparse)

    async def has_sparse(self, name: str) -> bool:
        self._check()
        return await self.inner.has_sparse(name)

    async def search_sparse(
        self, name: str, vector: SparseVector, limit: int = 10,
        filter: Mapping[str, Any] | None = None, with_terms: bool = False,
    ) -> list[ScoredPoint]:
        self._check()
        return await self.inner.search_sparse(name, vector, limit, filter, with_terms)

    async def collection_info(self, name: str) -> CollectionInfo:
        self._check()
        return await self.inner.collection_info(name)

    async def list_collections(self) -> list[str]:
        self._check()
        return await self.inner.list_collections()

    async def upsert(self, name: str, points: Sequence[Point], wait: bool = True) -> None:
        self._check()
        refused = self.poison & {point.id for point in points}
        if refused:
            raise ValidationError("point", f"refused {sorted(refused)}")
        await self.inner.upsert(name, points, wait)

    async def search(
        self, name: str, vector: np.ndarray | Sequence[float], limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredPoint]:
        self._check()
        return await self.inner.search(name, vector, limit, filter)

    async def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[Point]:
        self._check()
        return await self.inner.retrieve(name, ids, with_vectors)

    async def delete(self, name: str, ids: Sequence[str], wait: bool = True) -> None:
        self._check()
        await self.inner.delete(name, ids, wait)

    async def count(self, name: str) -> int:
        self._check()
        return await self.inner.count(name)

    async def scroll(
        self, name: str, batch_size: int = 256, with_vectors: bool = True
    ) -> AsyncIterator[list[Point]]:
        self._check()
        async for batch in self.inner.scroll(name, batch_size, with_vectors):
            yield batch

    async def delete_collection(self, name: str) -> None:
        self._check()
        await self.inner.delete_collection(name)

    async def optimize(self, name: str) -> None:
        self._check()
        await self.inner.optimize(name)

    async def close(self) -> None:
        await self.inner.close()


def install_flaky_store(node: Service) -> None:
    """Make the node's qdrant_manager open a FlakyStore around the real store when it starts."""
    qdrant: QdrantManager = node.get("qdrant_manager")
    qdrant.store_factory = lambda settings: FlakyStore(build_vector_store(settings))


def flaky_store(node: Service) -> FlakyStore:
    store = node.get("qdrant_manager").store
    assert isinstance(store, FlakyStore)
    return store
