"""Free-text tasks and notes, optionally tied to an email, searchable by meaning.

A task is committed to SQL first, then embedded and upserted into the task collection in the
same request. When the store or embedder cannot answer, the task stays ``pending`` and the
vector processor indexes it later: creating a task never fails for want of a vector store.

Failures are told apart as the processor does for emails: an outage leaves the task pending for
as long as it lasts; any other error (a point the store refuses, a dimension mismatch) is
retried alone with exponential back-off, and after ``vector_processor.max_attempts`` the task is
marked ``failed`` and its error logged and kept in :attr:`TaskService.errors`. The attempt count
lives in memory: a restart gives a failing task a fresh series of attempts, never an endless one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import emails, tasks
from email_sender.errors import (
    EmailSenderError,
    EmbedderUnavailable,
    ValidationError,
    VectorStoreUnavailable,
)
from email_sender.settings import VectorProcessorSettings
from email_sender.vectors.managers import EmbedderManager, QdrantManager
from email_sender.vectors.payloads import TASK_COLUMNS, task_points
from email_sender.vectors.store import ScoredPoint

logger = logging.getLogger(__name__)

# The errors of the tasks that failed last, kept for status pages; older ones are in the log.
KEPT_ERRORS = 1000


@dataclass(slots=True)
class _Retry:
    attempts: int
    due_at: float
    error: str


class TaskService:
    def __init__(
        self,
        db: Database,
        qdrant: QdrantManager,
        embedder: EmbedderManager,
        *,
        collection: str,
        options: VectorProcessorSettings | None = None,
    ) -> None:
        self.db = db
        self.qdrant = qdrant
        self.embedder = embedder
        self.collection = collection
        self.options = options or VectorProcessorSettings()
        self._retries: dict[str, _Retry] = {}
        self.errors: dict[str, str] = {}  # task id → the error it failed with
        self.counters = {"indexed": 0, "retried": 0, "failed": 0}

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
        except EmailSenderError as exc:
            # The task is stored; the processor retries it with back-off and a bound.
            await self._retry_or_fail(_Row(row), exc)
        return row

    async def index_pending(self, limit: int) -> int:
        """Index up to ``limit`` due pending tasks; answer how many were indexed."""
        now = time.time()
        waiting = [task_id for task_id, retry in self._retries.items() if retry.due_at > now]
        query = (
            select(*TASK_COLUMNS)
            .where(tasks.c.vector_state == "pending")
            .order_by(tasks.c.created_at)
            .limit(limit)
        )
        if waiting:
            query = query.where(tasks.c.id.not_in(waiting))
        async with self.db.connect() as connection:
            rows = list(await connection.execute(query))
        if not rows:
            return 0
        try:
            await self._index(rows)
            return len(rows)
        except (VectorStoreUnavailable, EmbedderUnavailable):
            raise
        except EmailSenderError as exc:
            if len(rows) == 1:
                await self._retry_or_fail(rows[0], exc)
                return 0
        # One bad task must not hold back its batch: try each alone.
        indexed = 0
        for row in rows:
            try:
                await self._index([row])
                indexed += 1
            except (VectorStoreUnavailable, EmbedderUnavailable):
                raise
            except EmailSenderError as single:
                await self._retry_or_fail(row, single)
        return indexed

    async def _index(self, rows: Sequence[Any]) -> None:
        store = await self.qdrant.ready_store()
        vectors = await self.embedder.embed([row.text for row in rows])
        await store.upsert(self.collection, task_points(rows, vectors, self.embedder.model))
        ids = [str(row.id) for row in rows]
        async with self.db.transaction() as connection:
            await connection.execute(
                update(tasks).where(tasks.c.id.in_(ids)).values(vector_state="indexed")
            )
        for task_id in ids:
            self._retries.pop(task_id, None)
        self.counters["indexed"] += len(ids)

    async def _retry_or_fail(self, row: Any, exc: EmailSenderError) -> None:
        task_id = str(row.id)
        previous = self._retries.get(task_id)
        attempts = (previous.attempts if previous else 0) + 1
        extra = {"task_id": task_id, "attempt": attempts, "error": exc.message}
        if attempts >= self.options.max_attempts:
            async with self.db.transaction() as connection:
                await connection.execute(
                    update(tasks).where(tasks.c.id == task_id).values(vector_state="failed")
                )
            self._retries.pop(task_id, None)
            self.errors[task_id] = exc.message
            while len(self.errors) > KEPT_ERRORS:
                self.errors.pop(next(iter(self.errors)))
            self.counters["failed"] += 1
            logger.error("task_index_failed", extra={**extra, "outcome": "failed"})
            return
        delay = min(self.options.backoff_max, self.options.backoff_base * 2 ** (attempts - 1))
        self._retries[task_id] = _Retry(attempts, time.time() + delay, exc.message)
        self.counters["retried"] += 1
        logger.warning("task_index_failed", extra={**extra, "outcome": "retried",
                                                   "retry_in_s": delay})

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
