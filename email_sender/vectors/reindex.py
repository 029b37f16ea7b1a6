"""Rebuild a collection from SQL: drop it, create it again, embed and upsert every row.

SQL is the source of truth, so this is always safe; it is how an operator recovers from a lost
or corrupted store, or moves to another embedding model. Emails come in ``(created_at, id)``
order, a keyset page at a time, so memory stays flat however many there are.

Every row is marked ``pending`` before the collection is dropped, and a batch is marked
``indexed`` only after its upsert succeeded: a run that stops half-way (an error, Ctrl-C, a
crash) never leaves a row marked indexed that the store does not hold, and the vector processor
indexes whatever is left once the reindex claim runs out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import emails, inbound_messages, tasks
from email_sender.errors import EmailSenderError, ValidationError
from email_sender.settings import CollectionSettings
from email_sender.vectors.embedders import Embedder
from email_sender.vectors.factory import EMAIL_PAYLOAD_INDEXES, TASK_PAYLOAD_INDEXES
from email_sender.vectors.payloads import (
    EMAIL_COLUMNS,
    TASK_COLUMNS,
    email_document,
    email_points,
    email_words,
    task_points,
)
from email_sender.vectors.sparse import TextAnalyser
from email_sender.vectors.store import VectorStore

logger = logging.getLogger(__name__)

# While a reindex runs, the processor leaves the rows it reset alone; after a crash it takes
# them over once this has passed.
REINDEX_CLAIM_SECONDS = 900.0


@dataclass(frozen=True)
class ReindexResult:
    collection: str
    points: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        rate = self.points / self.seconds if self.seconds > 0 else 0.0
        return {
            "collection": self.collection,
            "points": self.points,
            "seconds": round(self.seconds, 3),
            "per_second": round(rate, 1),
        }


async def count_rows(db: Database, collections: CollectionSettings, name: str) -> int:
    table = _table(collections, name)
    async with db.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(table))).scalar() or 0
        )


async def reindex(
    db: Database,
    store: VectorStore,
    embedder: Embedder,
    collections: CollectionSettings,
    name: str,
    *,
    analyser: TextAnalyser | None = None,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> ReindexResult:
    """Drop ``name``, recreate it with the embedder's dimension, and fill it from SQL.

    The email collection comes back with its sparse vector, whatever it had before: one way to
    upgrade a collection made before search by words (``vectors upgrade`` is the other, keeping
    the dense vectors)."""
    table = _table(collections, name)
    is_emails = table is emails
    started = time.perf_counter()
    indexes = EMAIL_PAYLOAD_INDEXES if is_emails else TASK_PAYLOAD_INDEXES
    await _mark_all_pending(db, table)
    try:
        await store.delete_collection(name)
        await store.ensure_collection(name, embedder.dimension, "Cosine", indexes, is_emails)
        if is_emails:
            # Received mail shares the collection; the inbound manager indexes it again.
            await _mark_inbound_pending(db)
        words = analyser or TextAnalyser()
        done = await _fill(db, store, embedder, words, table, name, batch_size, progress)
        await store.optimize(name)
    except BaseException:
        # Rows not reached yet go back to the processor now rather than after the claim.
        with contextlib.suppress(EmailSenderError):
            await _release_claim(db, table)
        raise
    result = ReindexResult(name, done, time.perf_counter() - started)
    logger.info("collection_reindexed", extra=result.as_dict())
    return result


async def _fill(
    db: Database,
    store: VectorStore,
    embedder: Embedder,
    analyser: TextAnalyser,
    table: Table,
    name: str,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> int:
    """Embed and upsert every row, a keyset page at a time; answer how many."""
    is_emails = table is emails
    columns = EMAIL_COLUMNS if is_emails else TASK_COLUMNS
    done = 0
    after: tuple[float, str] | None = None
    while True:
        query = select(*columns).order_by(table.c.created_at, table.c.id).limit(batch_size)
        if after is not None:
            query = query.where(
                or_(
                    table.c.created_at > after[0],
                    and_(table.c.created_at == after[0], table.c.id > after[1]),
                )
            )
        async with db.connect() as connection:
            rows = list(await connection.execute(query))
        if not rows:
            break
        if is_emails:
            vectors = await embedder.embed([email_document(row) for row in rows])
            words = [email_words(row) for row in rows]
            analysed = await analyser.analyse_off_loop(words, sparse=True)
            points = email_points(rows, vectors, embedder.model, analysed)
        else:
            vectors = await embedder.embed([row.text for row in rows])
            points = task_points(rows, vectors, embedder.model)
        # The write-ahead log keeps each batch; one flush (close or optimize) ends the run.
        await store.upsert(name, points, wait=False)
        await _mark_indexed(db, table, [str(row.id) for row in rows])
        done += len(rows)
        after = (rows[-1].created_at, str(rows[-1].id))
        if progress is not None:
            progress(len(rows))
    return done


async def _mark_indexed(db: Database, table: Table, ids: list[str]) -> None:
    values: dict[str, Any] = {"vector_state": "indexed"}
    if table is emails:
        values.update(vector_attempts=0, vector_next_at=0.0)
    async with db.transaction() as connection:
        await connection.execute(update(table).where(table.c.id.in_(ids)).values(**values))


async def _mark_all_pending(db: Database, table: Table) -> None:
    values: dict[str, Any] = {"vector_state": "pending"}
    if table is emails:
        values.update(vector_attempts=0, vector_next_at=time.time() + REINDEX_CLAIM_SECONDS)
    async with db.transaction() as connection:
        await connection.execute(update(table).values(**values))


async def _mark_inbound_pending(db: Database) -> None:
    async with db.transaction() as connection:
        await connection.execute(update(inbound_messages).values(vector_state="pending"))


async def _release_claim(db: Database, table: Table) -> None:
    if table is emails:
        async with db.transaction() as connection:
            await connection.execute(
                update(emails).where(emails.c.vector_state == "pending").values(vector_next_at=0.0)
            )


def _table(collections: CollectionSettings, name: str) -> Table:
    if name == collections.emails:
        return emails
    if name == collections.tasks:
        return tasks
    raise ValidationError(
        "collection", f"{name!r} is not one of {collections.emails!r}, {collections.tasks!r}"
    )
