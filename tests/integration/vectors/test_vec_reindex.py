"""A reindex that stops half-way (an embedder that fails, a cancelled run) never leaves a row
marked ``indexed`` that the store does not hold, and the processor indexes the rest afterwards.

Real parts: SQLite and PostgreSQL, the Qdrant Edge store, the hashing embedder; the fault is an
embedder wrapper that fails or blocks on a chosen call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from email_sender.db.schema import emails
from email_sender.errors import EmbedderUnavailable
from email_sender.mail.message import EmailIn
from email_sender.service import Service, build_service
from email_sender.vectors.embedders import HashingEmbedder
from email_sender.vectors.reindex import reindex
from email_sender.vectors.store import VectorStore
from tests.conftest import make_settings, wait_for
from tests.support.vectors import fast_processor

EMAILS = 30
BATCH = 10


class StoppingEmbedder:
    """The real hashing embedder, except that call number ``stop_at`` fails or never returns."""

    def __init__(self, dimension: int, model: str, stop_at: int, *, hang: bool = False) -> None:
        self.inner = HashingEmbedder(dimension)
        self.dimension = dimension
        self.model = model
        self.stop_at = stop_at
        self.hang = hang
        self.calls = 0
        self.reached = asyncio.Event()

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.stop_at:
            self.reached.set()
            if self.hang:
                await asyncio.Event().wait()
            raise EmbedderUnavailable("the embedder went away")
        return await self.inner.embed(texts)

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url, **{"embedder.provider": "hashing"})
    service = build_service(settings)
    fast_processor(service)
    async with service:
        for n in range(EMAILS):
            await service.intake.accept(EmailIn.model_validate({
                "from": "desk@venue.example", "to": [f"artist{n}@example.org"],
                "subject": f"Date {n}", "text": f"The hall is free on day {n}."}))
        await wait_for(lambda: vector_states(service, "indexed"), timeout=60)
        yield service


async def vector_states(node: Service, wanted: str | None = None) -> dict[str, str] | bool:
    async with node.db.connect() as connection:
        rows = await connection.execute(select(emails.c.id, emails.c.vector_state))
        states = {row.id: row.vector_state for row in rows}
    if wanted is None:
        return states
    return len(states) == EMAILS and set(states.values()) == {wanted}


async def indexed_but_missing(node: Service, store: VectorStore) -> tuple[int, list[str]]:
    states = await vector_states(node)
    assert isinstance(states, dict)
    indexed = [email_id for email_id, state in states.items() if state == "indexed"]
    held = {point.id for point in await store.retrieve("emails", indexed)}
    return len(indexed), [email_id for email_id in indexed if email_id not in held]


def stopping_embedder(node: Service, *, hang: bool) -> StoppingEmbedder:
    manager = node.get("embedder")
    return StoppingEmbedder(manager.dimension, manager.model, stop_at=3, hang=hang)


@pytest.mark.parametrize("how", ["error", "cancel"])
async def test_an_interrupted_reindex_leaves_no_indexed_row_missing_from_the_store(
    node: Service, how: str
) -> None:
    store = await node.get("qdrant_manager").ready_store()
    embedder = stopping_embedder(node, hang=how == "cancel")
    run = asyncio.create_task(reindex(node.db, store, embedder, node.settings.collections,
                                      "emails", batch_size=BATCH))
    if how == "cancel":
        await asyncio.wait_for(embedder.reached.wait(), 30)
        run.cancel()
    with pytest.raises(EmbedderUnavailable if how == "error" else asyncio.CancelledError):
        await asyncio.wait_for(run, 60)

    indexed, missing = await indexed_but_missing(node, store)
    assert missing == []
    # At least the two batches upserted before the stop (the processor may have taken more).
    assert indexed >= 2 * BATCH
    # The rows not reached are handed back to the processor, which finishes the job.
    await wait_for(lambda: vector_states(node, "indexed"), timeout=60)
    indexed, missing = await indexed_but_missing(node, store)
    assert (indexed, missing) == (EMAILS, [])
    assert await store.count("emails") == EMAILS


async def test_a_complete_reindex_marks_every_row_and_fills_the_store(node: Service) -> None:
    store = await node.get("qdrant_manager").ready_store()
    embedder = stopping_embedder(node, hang=False)
    embedder.stop_at = 0  # never
    result = await reindex(node.db, store, embedder, node.settings.collections, "emails",
                           batch_size=BATCH)
    assert result.points == EMAILS
    assert await indexed_but_missing(node, store) == (EMAILS, [])
