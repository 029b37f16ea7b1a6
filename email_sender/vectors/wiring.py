"""Adds the vector managers and semantic search to a node (the API mounts the search routes
when ``service.search`` is set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from email_sender.vectors.managers import EmbedderManager, QdrantManager
from email_sender.vectors.processor import VectorProcessor
from email_sender.vectors.search import SearchService

if TYPE_CHECKING:
    from email_sender.service import Service


def add_vectors(service: Service, *, with_processor: bool = True) -> None:
    """Embedder, vector store, search and the near-duplicate guard; the indexer if asked.

    An ``api`` node searches but leaves indexing to ``vectors`` (or ``all``) nodes.
    """
    settings = service.settings
    embedder = EmbedderManager(settings)
    qdrant = QdrantManager(settings, embedder)
    service.add(embedder)
    service.add(qdrant)
    searcher = SearchService(service.db, qdrant, embedder, settings)
    service.search = searcher
    service.intake.guard = searcher.check
    if with_processor:
        processor = VectorProcessor(
            service.db,
            qdrant,
            embedder,
            collection=settings.collections.emails,
            # A copy: each processor may be tuned on its own.
            options=settings.vector_processor.model_copy(),
            tasks=searcher.tasks,
        )
        service.add(processor)
        service.intake.listeners.append(processor.wake)
