"""The ``vector_processor`` manager: indexes every accepted email off the send path.

It claims due rows (``vector_state = 'pending'`` and ``vector_next_at <= now``) by pushing their
``vector_next_at`` one lease ahead in the same statement (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so two nodes do not embed the same email at once, and a crashed node's claim simply
runs out. It embeds a batch, upserts the points (idempotent: id = email id), and marks the rows
``indexed``.

Two kinds of failure are told apart:

- an outage (the vector store or the embedder cannot answer): the batch goes back to pending,
  due after a short back-off that grows while the outage lasts. Such rows never become
  ``failed``: SQL keeps them and the backlog drains as soon as the outage ends. Accepting and
  delivering mail never wait on any of this.
- anything else (a point the store refuses, a dimension mismatch): the rows are retried alone
  with exponential back-off and marked ``failed`` after ``max_attempts``.

After a drain of more than ``optimize_after`` points the processor asks the store to optimise
the collection (build its HNSW and payload indexes), in the background once the backlog has
been empty for ``optimize_quiet_seconds``, never on the indexing path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, update

from email_sender import metrics
from email_sender.db.engine import Database
from email_sender.db.schema import emails
from email_sender.errors import EmailSenderError, EmbedderUnavailable, VectorStoreUnavailable
from email_sender.managers import Health, State
from email_sender.settings import VectorProcessorSettings
from email_sender.vectors.managers import EmbedderManager, QdrantManager
from email_sender.vectors.payloads import (
    EMAIL_COLUMNS,
    email_document,
    email_points,
    email_words,
)
from email_sender.vectors.store import VectorStore

logger = logging.getLogger(__name__)

BACKLOG_REFRESH_SECONDS = 2.0


class VectorProcessor:
    """The ``vector_processor`` manager: indexes accepted emails (and pending tasks)."""

    name = "vector_processor"
    depends_on: tuple[str, ...] = ("database", "qdrant_manager", "embedder")

    def __init__(
        self,
        db: Database,
        qdrant: QdrantManager,
        embedder: EmbedderManager,
        *,
        collection: str,
        options: VectorProcessorSettings | None = None,
        tasks: Any = None,
    ) -> None:
        self.db = db
        self.qdrant = qdrant
        self.embedder = embedder
        self.collection = collection
        self.options = options or VectorProcessorSettings()
        self.tasks = tasks  # a TaskService whose pending tasks are indexed too
        self._task: asyncio.Task[None] | None = None
        self._optimizing: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._outage_delay = 0.0
        self._since_optimize = 0
        self._quiet_since: float | None = None
        self._backlog_checked = 0.0
        self.backlog = 0
        self.last_error: str | None = None
        self.counters = {"indexed": 0, "retried": 0, "failed": 0, "outages": 0, "optimized": 0}

    # Manager

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="vector-processor")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in (self._task, self._optimizing):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._optimizing = None

    async def health(self) -> Health:
        if self._task is None:
            return Health(State.STOPPED)
        if self._task.done():
            return Health(State.FAILED, "the indexing loop stopped", self.last_error)
        detail = f"backlog {self.backlog}"
        if self._outage_delay:
            return Health(State.DEGRADED, f"{detail}, waiting out an outage", self.last_error)
        return Health(State.RUNNING, detail, self.last_error)

    def info(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "batch_size": self.options.batch_size,
            "backlog": self.backlog,
            **self.counters,
        }

    def wake(self) -> None:
        """Look for pending emails now (called after every accept)."""
        self._wake.set()

    # The loop

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                indexed = await self.index_batch()
                if self.tasks is not None:
                    indexed += await self.tasks.index_pending(self.options.batch_size)
                self._outage_delay = 0.0
            except (VectorStoreUnavailable, EmbedderUnavailable) as exc:
                await self._wait_out_outage(exc)
                continue
            except EmailSenderError as exc:  # the database; delivery reports it too
                self.last_error = exc.message
                logger.warning("vector_cycle_failed", extra={"error": exc.message})
                indexed = 0
            await self._refresh_backlog(force=indexed == 0)
            if indexed:
                self._quiet_since = None
            else:
                self._quiet_since = self._quiet_since or time.monotonic()
                self._optimize_if_due()
                await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
        self._wake.clear()

    async def _wait_out_outage(self, exc: EmailSenderError) -> None:
        first = self._outage_delay == 0.0
        self._outage_delay = min(
            self.options.outage_backoff_max,
            self._outage_delay * 2 if self._outage_delay else self.options.backoff_base,
        )
        self.last_error = exc.message
        if first:
            self.counters["outages"] += 1
        logger.warning(
            "vector_outage",
            extra={"error": exc.message, "retry_in_s": self._outage_delay, "backlog": self.backlog},
        )
        with contextlib.suppress(EmailSenderError):
            await self._refresh_backlog(force=True)
        # New mail must not hammer a store that is down: wake-ups are ignored until then.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._outage_delay)

    async def index_batch(self) -> int:
        """Claim, embed, upsert and mark one batch; answer how many emails were indexed."""
        store = await self.qdrant.ready_store()
        rows = await self._claim()
        if not rows:
            return 0
        try:
            await self._index(store, rows)
        except (VectorStoreUnavailable, EmbedderUnavailable):
            await self._put_back(rows)
            raise
        except EmailSenderError as exc:
            if len(rows) == 1:
                await self._retry_or_fail(rows[0], exc)
                return 0
            # One bad email must not hold back its batch: try each alone.
            indexed = 0
            for row in rows:
                try:
                    await self._index(store, [row])
                    indexed += 1
                except (VectorStoreUnavailable, EmbedderUnavailable):
                    await self._put_back([row])
                    raise
                except EmailSenderError as single:
                    await self._retry_or_fail(row, single)
            return indexed
        return len(rows)

    async def _index(self, store: VectorStore, rows: Sequence[Any]) -> None:
        # The embedder runs outside the GIL: the word analysis (pure Python) overlaps it.
        sparse = await store.has_sparse(self.collection)
        vectors, analysed = await asyncio.gather(
            self.embedder.embed([email_document(row) for row in rows]),
            self.qdrant.analyser.analyse_off_loop([email_words(row) for row in rows], sparse),
        )
        points = email_points(rows, vectors, self.embedder.model, analysed)
        await store.upsert(self.collection, points, wait=True)
        ids = [str(row.id) for row in rows]
        async with self.db.transaction() as connection:
            await connection.execute(
                update(emails)
                .where(emails.c.id.in_(ids), emails.c.vector_state == "pending")
                .values(vector_state="indexed")
            )
        metrics.vector_index_total.labels("indexed").inc(len(rows))
        self.counters["indexed"] += len(rows)
        self._since_optimize += len(rows)
        self.backlog = max(0, self.backlog - len(rows))
        metrics.vector_backlog.set(self.backlog)

    async def _claim(self) -> list[Any]:
        now = time.time()
        candidates = (
            select(emails.c.id)
            .where(emails.c.vector_state == "pending", emails.c.vector_next_at <= now)
            .order_by(emails.c.vector_next_at)
            .limit(self.options.batch_size)
        )
        if self.db.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(emails)
                .where(emails.c.id.in_(candidates.scalar_subquery()))
                .values(vector_next_at=now + self.options.lease_seconds)
                .returning(*EMAIL_COLUMNS)
            )
            return list(result)

    async def _put_back(self, rows: Sequence[Any]) -> None:
        """Outage: the rows are due again after the outage back-off, no attempt counted."""
        due = time.time() + max(self._outage_delay, self.options.backoff_base)
        await self._set_states(
            [
                {
                    "b_id": str(row.id),
                    "b_state": "pending",
                    "b_attempts": row.vector_attempts,
                    "b_next": due,
                }
                for row in rows
            ]
        )
        metrics.vector_index_total.labels("retried").inc(len(rows))
        self.counters["retried"] += len(rows)

    async def _retry_or_fail(self, row: Any, exc: EmailSenderError) -> None:
        attempts = row.vector_attempts + 1
        failed = attempts >= self.options.max_attempts
        delay = min(self.options.backoff_max, self.options.backoff_base * 2 ** (attempts - 1))
        await self._set_states(
            [
                {
                    "b_id": str(row.id),
                    "b_state": "failed" if failed else "pending",
                    "b_attempts": attempts,
                    "b_next": time.time() + delay,
                }
            ]
        )
        outcome = "failed" if failed else "retried"
        metrics.vector_index_total.labels(outcome).inc()
        self.counters[outcome] += 1
        self.last_error = exc.message
        logger.warning(
            "vector_index_failed",
            extra={
                "email_id": str(row.id),
                "attempt": attempts,
                "outcome": outcome,
                "error": exc.message,
            },
        )

    async def _set_states(self, values: list[dict[str, Any]]) -> None:
        statement = (
            update(emails)
            .where(emails.c.id == bindparam("b_id"))
            .values(
                vector_state=bindparam("b_state"),
                vector_attempts=bindparam("b_attempts"),
                vector_next_at=bindparam("b_next"),
            )
        )
        async with self.db.transaction() as connection:
            await connection.execute(statement, values)

    async def _refresh_backlog(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._backlog_checked < BACKLOG_REFRESH_SECONDS:
            return
        async with self.db.connect() as connection:
            self.backlog = int(
                (
                    await connection.execute(
                        select(func.count()).where(emails.c.vector_state == "pending")
                    )
                ).scalar()
                or 0
            )
        self._backlog_checked = time.monotonic()
        metrics.vector_backlog.set(self.backlog)

    # Optimisation after bulk loads

    def _optimize_if_due(self) -> None:
        if self._since_optimize < self.options.optimize_after or self._quiet_since is None:
            return
        if time.monotonic() - self._quiet_since < self.options.optimize_quiet_seconds:
            return
        if self._optimizing is not None and not self._optimizing.done():
            return
        self._since_optimize = 0
        self._optimizing = asyncio.create_task(self._optimize(), name="vector-optimize")

    async def _optimize(self) -> None:
        started = time.perf_counter()
        try:
            store = await self.qdrant.ready_store()
            await store.optimize(self.collection)
        except EmailSenderError as exc:
            logger.warning("vector_optimize_failed", extra={"error": exc.message})
            return
        self.counters["optimized"] += 1
        logger.info(
            "vector_optimized",
            extra={
                "collection": self.collection,
                "duration_ms": round((time.perf_counter() - started) * 1000),
            },
        )
