"""Free-text tasks and notes, optionally tied to an email, searchable by meaning.

A task is committed to SQL first, then embedded and upserted into the task collection in the
same request. When the store or embedder cannot answer, the task stays ``pending`` and the
vector processor indexes it later: creating a task never fails for want of a vector store.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import emails, tasks
from email_sender.errors import EmbedderUnavailable, ValidationError, VectorStoreUnavailable
from email_sender.vectors.managers import EmbedderManager, QdrantManager
from email_sender.vectors.payloads import TASK_COLUMNS, task_points
from email_sender.vectors.store import ScoredPoint

logger = logging.getLogger(__name__)


class TaskService:
    def __init__(
        self, db: Database, qdrant: QdrantManager, embedder: EmbedderManager, *, collection: str
    ) -> None:
        self.db = db
        self.qdrant = qdrant
        self.embedder = embedder
        self.collection = collection

    async def create(
        self, text: str, *, email_id: str | None = None, tags: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Store a task, index it now when possible, and answer it with its ``vector_state``."""
        row = {
            "id": str(uuid.uuid4()),
            "email_id": email_id,
            "text": text,
            "tags": list(tags),
            "created_at": time.time(),
            "vector_state": "pending",
        }
        async with self.db.transaction() as connection:
            if email_id is not None:
                known = await connection.execute(select(emails.c.id).where(emails.c.id == email_id))
                if known.first() is None:
                    raise ValidationError("email_id", f"no email with id {email_id}")
            await connection.execute(insert(tasks).values(**row))
        try:
            await self._index([_Row(row)])
            row["vector_state"] = "indexed"
        except (VectorStoreUnavailable, EmbedderUnavailable) as exc:
            logger.warning("task_index_deferred", extra={"task_id": row["id"], "error": str(exc)})
        return row

    async def index_pending(self, limit: int) -> int:
        """Index up to ``limit`` tasks left pending; answer how many."""
        async with self.db.connect() as connection:
            rows = list(
                await connection.execute(
                    select(*TASK_COLUMNS)
                    .where(tasks.c.vector_state == "pending")
                    .order_by(tasks.c.created_at)
                    .limit(limit)
                )
            )
        if rows:
            await self._index(rows)
        return len(rows)

    async def _index(self, rows: Sequence[Any]) -> None:
        store = await self.qdrant.ready_store()
        vectors = await self.embedder.embed([row.text for row in rows])
        await store.upsert(self.collection, task_points(rows, vectors, self.embedder.model))
        async with self.db.transaction() as connection:
            await connection.execute(
                update(tasks)
                .where(tasks.c.id.in_([str(row.id) for row in rows]))
                .values(vector_state="indexed")
            )

    async def search(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        limit: int,
        filter: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Nearest tasks, each with its full text from SQL."""
        store = await self.qdrant.ready_store()
        hits = await store.search(self.collection, vector, limit=limit, filter=filter)
        texts = await self._texts([hit.id for hit in hits])
        return [_task_result(hit, texts.get(hit.id)) for hit in hits]

    async def _texts(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(tasks.c.id, tasks.c.text).where(tasks.c.id.in_(ids))
            )
            return {row.id: row.text for row in rows}


class _Row:
    """Attribute access over a dict, the shape the payload builders read."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _task_result(hit: ScoredPoint, text: str | None) -> dict[str, Any]:
    payload = hit.payload
    return {
        "id": hit.id,
        "score": hit.score,
        "text": text if text is not None else payload.get("text", ""),
        "email_id": payload.get("email_id"),
        "tags": payload.get("tags", []),
        "created_at": payload.get("created_at"),
        "payload": payload,
    }
