"""The ``embedder`` and ``qdrant_manager`` managers: the embedder and the vector store of a node.

``qdrant_manager`` opens the store at start and creates the ``emails`` and ``task_vectors``
collections (embedder's dimension, Cosine, payload indexes) when absent. Its health probes the
store and names why it cannot answer (connection refused, timeout, auth failed, locked), which
``/health/ready`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from email_sender import metrics
from email_sender.errors import (
    DimensionMismatch,
    EmbedderUnavailable,
    NotFound,
    VectorStoreAuthError,
    VectorStoreConnectionRefused,
    VectorStoreLocked,
    VectorStoreTimeout,
    VectorStoreUnavailable,
)
from email_sender.managers import Health, State
from email_sender.settings import Settings
from email_sender.vectors.embedders import Embedder, LocalEmbedder, build_embedder
from email_sender.vectors.factory import build_vector_store, ensure_collections
from email_sender.vectors.sparse import TextAnalyser
from email_sender.vectors.store import VectorStore

logger = logging.getLogger(__name__)

# An embedder error this recent makes the embedder manager report itself degraded.
EMBEDDER_ERROR_WINDOW = 60.0
STORE_PROBE_TIMEOUT = 5.0


def store_error_kind(exc: BaseException) -> str:
    """A short name for why the store cannot answer, shown in /health/ready."""
    if isinstance(exc, VectorStoreConnectionRefused):
        return "connection refused"
    if isinstance(exc, VectorStoreTimeout):
        return "timeout"
    if isinstance(exc, VectorStoreAuthError):
        return "auth failed"
    if isinstance(exc, VectorStoreLocked):
        return "locked by another process"
    if isinstance(exc, VectorStoreUnavailable):
        return "unavailable"
    return type(exc).__name__


def embedder_error_kind(exc: EmbedderUnavailable) -> str:
    """rate_limited (429 / quota), server_error (5xx) or unavailable, for the error metric."""
    status = exc.details.get("status")
    text = exc.message
    if status == 429 or "HTTP 429" in text:
        return "rate_limited"
    if (isinstance(status, int) and status >= 500) or " HTTP 5" in text:
        return "server_error"
    return "unavailable"


class EmbedderManager:
    """The ``embedder`` manager: builds the configured embedder and loads a local model."""

    name = "embedder"
    depends_on: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedder: Embedder = build_embedder(settings.embedder, settings.connection_pool)
        self._closed = False
        self.last_error: str | None = None
        self._last_error_at = 0.0
        self.counters = {"texts": 0, "errors": 0}

    @property
    def model(self) -> str:
        return self.embedder.model

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    async def start(self) -> None:
        if self._closed:  # a restart after stop(): the old HTTP client is closed
            self.embedder = build_embedder(self.settings.embedder, self.settings.connection_pool)
            self._closed = False
        if isinstance(self.embedder, LocalEmbedder):
            await self.embedder.load()

    async def stop(self) -> None:
        await self.embedder.close()
        self._closed = True

    async def health(self) -> Health:
        if self._closed:
            return Health(State.STOPPED)
        detail = f"{self.embedder.name} {self.embedder.model} ({self.embedder.dimension}-d)"
        if time.monotonic() - self._last_error_at < EMBEDDER_ERROR_WINDOW:
            return Health(State.DEGRADED, detail, self.last_error)
        return Health(State.RUNNING, detail, self.last_error)

    def info(self) -> dict[str, Any]:
        return {
            "provider": self.embedder.name,
            "model": self.embedder.model,
            "dimension": self.embedder.dimension,
            **self.counters,
        }

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch; failures are counted by kind and remembered for health."""
        if self._closed:
            raise EmbedderUnavailable("the embedder is stopped")
        try:
            vectors = await self.embedder.embed(texts)
        except EmbedderUnavailable as exc:
            metrics.embedder_errors.labels(embedder_error_kind(exc)).inc()
            self.counters["errors"] += 1
            self.last_error = exc.message
            self._last_error_at = time.monotonic()
            raise
        self.counters["texts"] += len(texts)
        return vectors

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]


class ModelDimensionMismatch(DimensionMismatch):
    """The embedding model's vectors do not fit the collections already made."""

    def __init__(self, model: str, got: int, expected: int) -> None:
        super().__init__(got, expected)
        self.message = (
            f"embedder.model {model!r} gives {got}-d vectors but the collections hold "
            f"{expected}-d ones: go back to the model they were made with, or rebuild them "
            "with email-sender vectors reindex"
        )
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message


class QdrantManager:
    """The ``qdrant_manager`` manager: opens the vector store and keeps its collections.

    An embedded (Edge) store that cannot be opened fails the start: another process holds it.
    A Qdrant server that is down at start does not: the manager runs degraded and creates the
    collections when the server answers, so the node still accepts and delivers mail.
    """

    name = "qdrant_manager"
    depends_on: tuple[str, ...] = ("embedder",)

    def __init__(
        self,
        settings: Settings,
        embedder: EmbedderManager,
        store_factory: Callable[[Settings], VectorStore] = build_vector_store,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store_factory = store_factory
        self.store: VectorStore | None = None
        self.analyser = TextAnalyser(settings.search.languages)
        # Set once the email collection is known to lack the sparse vector.
        self.upgrade_pending = False
        self._ensured = False
        self._ensure_lock = asyncio.Lock()
        self.counts: dict[str, int] = {}
        self.last_error: str | None = None

    @property
    def collections(self) -> tuple[str, str]:
        return self.settings.collections.emails, self.settings.collections.tasks

    async def start(self) -> None:
        self.store = self.store_factory(self.settings)
        self._ensured = False
        try:
            await self._ensure()
        except VectorStoreUnavailable as exc:
            if self.store.backend == "qdrant-edge":
                await self._close()
                raise
            self.last_error = exc.message
            logger.warning(
                "vector_store_unreachable_at_start",
                extra={"kind": store_error_kind(exc), "error": exc.message},
            )

    async def stop(self) -> None:
        await self._close()

    async def _close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            await store.close()

    async def _ensure(self) -> None:
        async with self._ensure_lock:
            if self._ensured or self.store is None:
                return
            try:
                await ensure_collections(
                    self.store, self.settings.collections, self.embedder.dimension
                )
            except DimensionMismatch as exc:
                raise ModelDimensionMismatch(self.embedder.model, exc.got, exc.expected) from exc
            emails = self.settings.collections.emails
            self.upgrade_pending = not await self.store.has_sparse(emails)
            if self.upgrade_pending:
                logger.warning(
                    "collection_upgrade_pending",
                    extra={
                        "collection": emails,
                        "reason": "made before search by words; hybrid search answers densely",
                        "fix": "email-sender vectors upgrade",
                    },
                )
            self._ensured = True
            self.last_error = None

    async def ready_store(self) -> VectorStore:
        """The store with its collections in place, or VectorStoreUnavailable."""
        if self.store is None:
            raise VectorStoreUnavailable("the vector store is not open (qdrant_manager stopped)")
        if not self._ensured:
            await self._ensure()
        return self.store

    async def health(self) -> Health:
        if self.store is None:
            return Health(State.STOPPED)
        location = getattr(self.store, "where", None) or getattr(self.store, "path", "")
        where = f"{self.store.backend} {location}"
        try:
            store = await asyncio.wait_for(self.ready_store(), STORE_PROBE_TIMEOUT)
            for name in self.collections:
                self.counts[name] = await asyncio.wait_for(store.count(name), STORE_PROBE_TIMEOUT)
        except TimeoutError:
            self.last_error = f"the vector store did not answer in {STORE_PROBE_TIMEOUT:.0f} s"
            return Health(State.DEGRADED, f"{where.strip()}: timeout", self.last_error)
        except (VectorStoreUnavailable, NotFound) as exc:
            self.last_error = exc.message
            return Health(
                State.DEGRADED, f"{where.strip()}: {store_error_kind(exc)}", self.last_error
            )
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        if self.upgrade_pending:
            counts += f"; {self.settings.collections.emails} upgrade pending (vectors upgrade)"
        return Health(State.RUNNING, f"{where.strip()}: {counts}")

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.store.backend if self.store else None,
            "collections": dict(self.counts),
            "dimension": self.embedder.dimension,
            "languages": self.analyser.languages,
            "upgrade_pending": self.upgrade_pending,
        }
