"""Received messages in SQL: stored once, listed, classified, labelled, threaded.

A message is stored under its dedupe key (Message-ID + body hash), so the same message met
through two doors (the SMTP listener and the IMAP poller, or a poller restarted mid-mailbox)
is one row. Its raw source is kept base64-encoded until ``raw_expires_at``, then emptied.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Text, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from email_sender.db import audit
from email_sender.db.cursors import newest_first, page_of
from email_sender.db.engine import Database
from email_sender.db.schema import classifier_labels, inbound_messages
from email_sender.errors import DuplicateKey, NotFound

# Kinds that are people writing, as opposed to machines answering for them.
HUMAN_KINDS = ("reply", "other")
# How many recent soft bounces are read to count one address's.
SOFT_BOUNCE_SCAN = 1000

_SUMMARY = [
    inbound_messages.c.id,
    inbound_messages.c.message_id,
    inbound_messages.c.via,
    inbound_messages.c.from_addr,
    inbound_messages.c.from_name,
    inbound_messages.c.to_addrs,
    inbound_messages.c.subject,
    inbound_messages.c.kind,
    inbound_messages.c.intent,
    inbound_messages.c.confidence,
    inbound_messages.c.layer,
    inbound_messages.c.needs_review,
    inbound_messages.c.label,
    inbound_messages.c.email_id,
    inbound_messages.c.thread_by,
    inbound_messages.c.vector_state,
    inbound_messages.c.received_at,
    inbound_messages.c.size,
]

# Every column but the raw source (up to tens of MB), and whether it is still kept.
_WITHOUT_RAW = [column for column in inbound_messages.c if column.name != "raw"]
_DETAIL = [*_WITHOUT_RAW, inbound_messages.c.raw.is_not(None).label("raw_kept")]


class InboundStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, row: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store ``row`` (its ``id`` is set here); answer the stored row and whether it is new.

        A message already stored under the same dedupe key answers the earlier row.
        """
        row = {**row, "id": str(uuid.uuid4())}
        try:
            async with self.db.transaction() as connection:
                await connection.execute(insert(inbound_messages).values(**row))
        except DuplicateKey:
            existing = await self._by_dedupe_key(row["dedupe_key"])
            if existing is None:  # deleted between the two statements: store it after all
                return await self.insert(row)
            return existing, False
        return row, True

    async def _by_dedupe_key(self, key: str) -> dict[str, Any] | None:
        async with self.db.connect() as connection:
            found = (
                await connection.execute(
                    select(*_DETAIL).where(inbound_messages.c.dedupe_key == key)
                )
            ).first()
        return dict(found._mapping) if found else None

    async def get(self, inbound_id: str) -> dict[str, Any]:
        """One stored message without its raw source (``raw_kept`` says if it is still kept)."""
        async with self.db.connect() as connection:
            found = (
                await connection.execute(
                    select(*_DETAIL).where(inbound_messages.c.id == inbound_id)
                )
            ).first()
        if found is None:
            raise NotFound(f"no inbound message with id {inbound_id}", id=inbound_id)
        return dict(found._mapping)

    async def mark_indexed(self, inbound_id: str, intent: str | None) -> bool:
        """Mark the message indexed with ``intent`` in its point; False when its intent
        changed meanwhile (a label): it stays pending and is indexed again."""
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(inbound_messages)
                .where(
                    inbound_messages.c.id == inbound_id,
                    inbound_messages.c.intent.is_(None) if intent is None
                    else inbound_messages.c.intent == intent,
                )
                .values(vector_state="indexed")
            )
        return bool(result.rowcount)

    async def update(self, inbound_id: str, **values: Any) -> None:
        async with self.db.transaction() as connection:
            await connection.execute(
                update(inbound_messages).where(inbound_messages.c.id == inbound_id).values(**values)
            )

    async def page(
        self,
        *,
        kind: str | None = None,
        intent: str | None = None,
        needs_review: bool | None = None,
        email_id: str | None = None,
        sender: str | None = None,
        since: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, ``limit`` at a time; ``cursor`` continues where the last page ended."""
        query = select(*_SUMMARY)
        if kind:
            query = query.where(inbound_messages.c.kind == kind)
        if intent:
            query = query.where(inbound_messages.c.intent == intent)
        if needs_review is not None:
            query = query.where(inbound_messages.c.needs_review == int(needs_review))
        if email_id:
            query = query.where(inbound_messages.c.email_id == email_id)
        if sender:
            query = query.where(
                inbound_messages.c.from_addr.contains(sender.lower(), autoescape=True)
            )
        if since is not None:
            query = query.where(inbound_messages.c.received_at >= since)
        query = newest_first(
            query, inbound_messages.c.received_at, inbound_messages.c.id, cursor=cursor,
            limit=limit,
        )
        async with self.db.connect() as connection:
            rows = [dict(row._mapping) for row in await connection.execute(query)]
        return page_of(rows, limit, "received_at")

    async def counts_by_kind(self, since: float) -> dict[str, int]:
        """Messages received since ``since`` (epoch), counted by kind."""
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(inbound_messages.c.kind, func.count())
                .where(inbound_messages.c.received_at >= since)
                .group_by(inbound_messages.c.kind)
            )
            return {kind: count for kind, count in rows}

    async def answering(self, email_id: str, *, limit: int = 500) -> list[dict[str, Any]]:
        """Every message linked to one email, oldest first."""
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(*_SUMMARY, inbound_messages.c.own_words)
                .where(inbound_messages.c.email_id == email_id)
                .order_by(inbound_messages.c.received_at, inbound_messages.c.id)
                .limit(limit)
            )
            return [dict(row._mapping) for row in rows]

    async def pending(self, limit: int) -> list[dict[str, Any]]:
        """Messages still to classify or index, oldest first (without their raw source)."""
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(*_WITHOUT_RAW)
                .where(inbound_messages.c.vector_state == "pending")
                .order_by(inbound_messages.c.received_at)
                .limit(limit)
            )
            return [dict(row._mapping) for row in rows]

    async def soft_bounces(self, address: str, since: float) -> int:
        """How many of our emails to ``address`` soft-bounced since ``since`` (several notices
        about one email, a relay still trying, count once)."""
        address = address.lower()
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(
                    inbound_messages.c.id, inbound_messages.c.email_id, inbound_messages.c.details
                )
                .where(
                    inbound_messages.c.kind == "bounce",
                    # By when the report was written: old reports read now are not recent.
                    func.coalesce(inbound_messages.c.written_at, inbound_messages.c.received_at)
                    >= since,
                    func.lower(inbound_messages.c.details.cast(Text())).contains(
                        address, autoescape=True
                    ),
                )
                .limit(SOFT_BOUNCE_SCAN)
            )
            return len({
                row.email_id or row.id
                for row in rows
                for recipient in (row.details or {}).get("recipients", [])
                if recipient.get("address") == address and not recipient.get("permanent")
            })

    async def expire_raw(self, now: float | None = None) -> int:
        """Empty the raw sources whose retention has passed; answer how many."""
        now = time.time() if now is None else now
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(inbound_messages)
                .where(
                    inbound_messages.c.raw_expires_at <= now,
                    inbound_messages.c.raw.is_not(None),
                )
                .values(raw=None)
            )
        return int(result.rowcount or 0)

    # Labels: operators' corrections, kept as training examples

    async def save_label(
        self, row: dict[str, Any], intent: str, *, actor: str, client_ip: str | None = None
    ) -> None:
        """Record the operator's intent for a message (the latest label wins), show it, and
        audit it: all three or none."""
        values = {
            "text": row["own_words"],
            "intent": intent,
            "previous_intent": row["intent"],
            "actor": actor,
            "created_at": time.time(),
        }
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        # One statement, so two labels at once cannot both insert.
        upsert = dialect.insert(classifier_labels).values(inbound_id=row["id"], **values)
        upsert = upsert.on_conflict_do_update(index_elements=["inbound_id"], set_=values)
        async with self.db.transaction() as connection:
            await connection.execute(upsert)
            await connection.execute(
                update(inbound_messages)
                .where(inbound_messages.c.id == row["id"])
                .values(
                    label=intent, intent=intent, layer="label", confidence=1.0, needs_review=0,
                    # Indexed again, so that search filters see the corrected intent.
                    vector_state="pending",
                )
            )
            await audit.record_in(
                connection, actor=actor, action="inbound.label", target=row["id"],
                details={"intent": intent, "previous": row["intent"]}, client_ip=client_ip,
            )

    async def labels_version(self) -> tuple[int, float]:
        """How many labels there are and when the last was saved: what retraining looks at."""
        async with self.db.connect() as connection:
            count, newest = (
                await connection.execute(
                    select(func.count(), func.max(classifier_labels.c.created_at))
                )
            ).one()
        return int(count), float(newest or 0.0)

    async def save_classification(self, inbound_id: str, values: dict[str, Any]) -> bool:
        """Record a model's classification unless one (or a label) is already there; answer
        whether this one was recorded (two nodes may classify the same message)."""
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(inbound_messages)
                .where(inbound_messages.c.id == inbound_id, inbound_messages.c.intent.is_(None))
                .values(**values)
            )
        return bool(result.rowcount)

    async def labels(self) -> list[dict[str, Any]]:
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(
                    classifier_labels.c.text,
                    classifier_labels.c.intent,
                    classifier_labels.c.created_at,
                ).order_by(
                    classifier_labels.c.created_at
                )
            )
            return [dict(row._mapping) for row in rows]

