"""Adds the vector managers, semantic search and its routes to a node."""

from __future__ import annotations

from email_sender.service import Service
from email_sender.vectors.managers import EmbedderManager, QdrantManager
from email_sender.vectors.processor import VectorProcessor
from email_sender.vectors.search import SearchService


def add_vectors(service: Service, *, with_processor: bool = True) -> None:
    """Embedder, vector store, search and the near-duplicate guard; the indexer if asked.

    An ``api`` node searches but leaves indexing to ``vectors`` (or ``all``) nodes.
    """
    from email_sender.api.routes import collections, search

    settings = service.settings
    embedder = EmbedderManager(settings)
    qdrant = QdrantManager(settings, embedder)
    service.add(embedder)
    service.add(qdrant)
    searcher = SearchService(service.db, qdrant, embedder, settings)
    service.search = searcher
    if service.intake is not None:
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
        if service.intake is not None:
            service.intake.listeners.append(processor.wake)
    service.extra_routers.extend([search.router, collections.router])
