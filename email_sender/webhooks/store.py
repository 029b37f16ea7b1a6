"""Webhook subscriptions and their durable delivery queue in SQL.

An event becomes one ``webhook_deliveries`` row per matching active subscription. The row is
inserted with "on conflict do nothing" on (webhook_id, event_id): every node of a cluster sees
every event (the Redis bus fans out), and only the first insert counts. Dispatchers claim due
rows under a lease, as the outbox does: on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, on SQLite
with one ``UPDATE … RETURNING`` (a single writer). The table has no lease owner column: the
lease's own ``lease_until`` value identifies the claim, and an outcome is recorded only while
it is unchanged, so a dispatcher whose lease expired and was taken over records nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from email_sender.db.cursors import newest_first, page_of
from email_sender.db.engine import Database
from email_sender.db.schema import webhook_deliveries, webhooks
from email_sender.errors import NotFound
from email_sender.events import Event

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

# What a subscription to every event lists.
EVERY_EVENT = "*"


@dataclass(frozen=True)
class Subscription:
    """What the dispatcher needs to match events: the id and the event types."""

    id: str
    events: tuple[str, ...]

    def wants(self, event_type: str) -> bool:
        return EVERY_EVENT in self.events or event_type in self.events


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to one dispatcher, with what posting it needs."""

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int  # attempts made before this one
    lease_until: float
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, as recorded."""

    status: str  # pending (to retry) | delivered | failed
    response_code: int | None
    error: str | None
    duration_ms: float
    next_attempt_at: float | None = None


def event_payload(event: Event) -> dict[str, Any]:
    """The JSON body receivers get: the event's id, type, ISO time and data."""
    # Round-trip through JSON now: the stored payload is exactly what will be posted.
    data = json.loads(json.dumps(event.data, default=str))
    return {"id": event.id, "type": event.type, "time": _iso(event.time), "data": data}


_DELIVERY_VIEW = [
    webhook_deliveries.c.id,
    webhook_deliveries.c.event_id,
    webhook_deliveries.c.event_type,
    webhook_deliveries.c.status,
    webhook_deliveries.c.attempts,
    webhook_deliveries.c.response_code,
    webhook_deliveries.c.last_error,
    webhook_deliveries.c.duration_ms,
    webhook_deliveries.c.created_at,
    webhook_deliveries.c.delivered_at,
    webhook_deliveries.c.next_attempt_at,
]


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Subscriptions

    async def create(
        self, *, url: str, events: list[str], secret: str, description: str | None = None
    ) -> dict[str, Any]:
        """Store a subscription; answer its row (secret included: shown once, on create)."""
        row = {
            "id": str(uuid.uuid4()),
            "url": url,
            "events": events,
            "secret": secret,
            "description": description,
            "active": 1,
            "created_at": time.time(),
        }
        async with self.db.transaction() as connection:
            await connection.execute(webhooks.insert().values(**row))
        return row

    async def get(self, webhook_id: str) -> dict[str, Any]:
        """One subscription, secret included; NotFound when there is none."""
        async with self.db.connect() as connection:
            row = (
                await connection.execute(select(webhooks).where(webhooks.c.id == webhook_id))
            ).first()
        if row is None:
            raise NotFound(f"no webhook with id {webhook_id}", id=webhook_id)
        return dict(row._mapping)

    async def page(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Subscriptions, newest first, ``limit`` at a time."""
        query = newest_first(
            select(webhooks), webhooks.c.created_at, webhooks.c.id, cursor=cursor, limit=limit
        )
        return await self._page(query, limit)

    async def delete(self, webhook_id: str) -> None:
        """Remove a subscription and its deliveries (pending ones are never posted)."""
        async with self.db.transaction() as connection:
            # Explicit, not left to ON DELETE CASCADE: a SQLite connection without
            # foreign_keys=ON would keep the orphans due for ever.
            await connection.execute(
                delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id)
            )
            result = await connection.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
            if result.rowcount == 0:
                raise NotFound(f"no webhook with id {webhook_id}", id=webhook_id)

    async def active_subscriptions(self) -> list[Subscription]:
        query = select(webhooks.c.id, webhooks.c.events).where(webhooks.c.active == 1)
        async with self.db.connect() as connection:
            rows = await connection.execute(query)
            return [Subscription(row.id, tuple(row.events)) for row in rows]

    # Deliveries

    async def enqueue(self, event: Event, webhook_ids: list[str]) -> int:
        """Queue the event for these subscriptions; answer how many deliveries are new.

        One INSERT … SELECT per subscription: the SELECT finds nothing for a subscription
        deleted or deactivated since the caller listed it, and a (webhook_id, event_id) pair
        already queued (by another node) is ignored.
        """
        if not webhook_ids:
            return 0
        payload = event_payload(event)
        now = time.time()
        created = 0
        async with self.db.transaction() as connection:
            for webhook_id in webhook_ids:
                statement = self._enqueue_one(webhook_id, event, payload, now)
                result = await connection.execute(statement)
                created += max(result.rowcount, 0)
        return created

    def _enqueue_one(
        self, webhook_id: str, event: Event, payload: dict[str, Any], now: float
    ) -> Any:
        source = select(
            literal(str(uuid.uuid4())),
            webhooks.c.id,
            literal(event.id),
            literal(event.type),
            literal(payload, webhook_deliveries.c.payload.type),
            literal(PENDING),
            literal(0),
            literal(now),
            literal(now),
        ).where(webhooks.c.id == webhook_id, webhooks.c.active == 1)
        columns = ["id", "webhook_id", "event_id", "event_type", "payload", "status", "attempts",
                   "next_attempt_at", "created_at"]
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        return (
            dialect.insert(webhook_deliveries)
            .from_select(columns, source)
            .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
        )

    async def claim(self, *, limit: int, lease_seconds: float) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries (or ones whose lease ran out), oldest due first."""
        now = time.time()
        lease_until = now + lease_seconds
        due = and_(
            webhook_deliveries.c.status == PENDING,
            webhook_deliveries.c.next_attempt_at <= now,
            or_(webhook_deliveries.c.lease_until.is_(None), webhook_deliveries.c.lease_until < now),
        )
        candidates = (
            select(webhook_deliveries.c.id)
            .where(due)
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        if self.db.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        async with self.db.transaction() as connection:
            leased = list(
                await connection.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id.in_(candidates.scalar_subquery()))
                    .values(lease_until=lease_until)
                    .returning(*webhook_deliveries.c)
                )
            )
            if not leased:
                return []
            targets = {
                row.id: row
                for row in await connection.execute(
                    select(webhooks.c.id, webhooks.c.url, webhooks.c.secret).where(
                        webhooks.c.id.in_({row.webhook_id for row in leased})
                    )
                )
            }
        return [
            Claimed(
                id=row.id,
                webhook_id=row.webhook_id,
                event_id=row.event_id,
                event_type=row.event_type,
                payload=row.payload,
                attempts=row.attempts,
                lease_until=lease_until,
                url=targets[row.webhook_id].url,
                secret=targets[row.webhook_id].secret,
            )
            for row in leased
            if row.webhook_id in targets
        ]

    async def record(self, delivery: Claimed, outcome: Outcome) -> bool:
        """Store an attempt's outcome while the lease is still ours; answer whether it was."""
        now = time.time()
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(webhook_deliveries)
                .where(*_held(delivery))
                .values(
                    status=outcome.status,
                    attempts=webhook_deliveries.c.attempts + 1,
                    response_code=outcome.response_code,
                    last_error=outcome.error,
                    duration_ms=outcome.duration_ms,
                    delivered_at=now if outcome.status == DELIVERED else None,
                    next_attempt_at=func.coalesce(
                        outcome.next_attempt_at, webhook_deliveries.c.next_attempt_at
                    ),
                    lease_until=None,
                )
            )
            return bool(result.rowcount)

    async def release(self, deliveries: list[Claimed]) -> int:
        """Give back leased deliveries that were not posted, due at once, no attempt counted."""
        released = 0
        async with self.db.transaction() as connection:
            for delivery in deliveries:
                result = await connection.execute(
                    update(webhook_deliveries).where(*_held(delivery)).values(lease_until=None)
                )
                released += result.rowcount
        return released

    async def deliveries(
        self, webhook_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One subscription's deliveries, newest first; NotFound for an unknown subscription."""
        await self.get(webhook_id)
        query = newest_first(
            select(*_DELIVERY_VIEW).where(webhook_deliveries.c.webhook_id == webhook_id),
            webhook_deliveries.c.created_at, webhook_deliveries.c.id, cursor=cursor, limit=limit,
        )
        return await self._page(query, limit)

    async def purge_finished(self, before: float) -> int:
        """Drop delivered and failed deliveries created before ``before``; answer how many."""
        async with self.db.transaction() as connection:
            result = await connection.execute(
                delete(webhook_deliveries).where(
                    webhook_deliveries.c.status != PENDING,
                    webhook_deliveries.c.created_at < before,
                )
            )
        return int(result.rowcount or 0)

    async def count_pending(self) -> int:
        query = select(func.count()).where(webhook_deliveries.c.status == PENDING)
        async with self.db.connect() as connection:
            return int((await connection.execute(query)).scalar() or 0)

    async def _page(self, query: Any, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        async with self.db.connect() as connection:
            rows = [dict(row._mapping) for row in await connection.execute(query)]
        return page_of(rows, limit)


def _iso(timestamp: float) -> str:
    """The same ISO-8601 form as the API's times (UTC, milliseconds)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _held(delivery: Claimed) -> tuple[Any, ...]:
    """Conditions under which ``delivery``'s lease is still the one it was claimed with."""
    return (
        webhook_deliveries.c.id == delivery.id,
        webhook_deliveries.c.status == PENDING,
        webhook_deliveries.c.lease_until == delivery.lease_until,
    )


