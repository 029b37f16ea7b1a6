"""Contacts in SQL: created, listed, changed through their lifecycle, and every move recorded.

A status change and its history row are written in one transaction, with the contact's row
locked (PostgreSQL), so two changes at once cannot both pass the lifecycle check against the
same old status. Each history row says what made the move (``user``, ``import``, ``sequence``,
``reply``, ``bounce``, ``complaint``, ``unsubscribe``), who, and why.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from email_sender.db.cursors import newest_first, page_of
from email_sender.db.engine import Database
from email_sender.db.schema import contact_history, contacts, enrolments
from email_sender.errors import Conflict, DuplicateKey, NotFound
from email_sender.outreach.fields import ContactFields, NewContact
from email_sender.outreach.lifecycle import Lifecycle

SOURCES = ("user", "import", "sequence", "reply", "bounce", "complaint", "unsubscribe")


@dataclass(frozen=True)
class Change:
    """Who or what moves a contact, and why (kept in its history)."""

    source: str  # one of SOURCES
    actor: str | None = None
    reason: str | None = None


class ContactStore:
    def __init__(self, db: Database, lifecycle: Lifecycle) -> None:
        self.db = db
        self.lifecycle = lifecycle

    async def create(self, new: NewContact, change: Change) -> dict[str, Any]:
        """Store a new contact in its given (or the initial) status; Conflict when the
        address is already a contact's."""
        [row] = self._rows([new])
        try:
            async with self.db.transaction() as connection:
                await self._insert(connection, [row], change)
        except DuplicateKey as exc:
            raise Conflict(f"{new.email} is already a contact", email=new.email) from exc
        return await self.get(row["id"])

    async def create_many(self, news: list[NewContact], change: Change) -> dict[str, str]:
        """Store new contacts in one transaction; answer their ids by address. DuplicateKey
        (nothing stored) when one address was taken meanwhile."""
        rows = self._rows(news)
        async with self.db.transaction() as connection:
            await self._insert(connection, rows, change)
        return {row["email"]: row["id"] for row in rows}

    def _rows(self, news: list[NewContact]) -> list[dict[str, Any]]:
        now = time.time()
        rows = []
        for new in news:
            status = new.status or self.lifecycle.initial
            self.lifecycle.check_known(status)
            given = {
                name: value for name, value in new.columns().items()
                if name not in ("email", "status")
            }
            # Every column in every row: one INSERT runs for the whole batch.
            rows.append({
                **dict.fromkeys(contacts.c.keys()), "tags": [], "attributes": {}, **given,
                "id": str(uuid.uuid4()), "email": new.email, "status": status,
                "created_at": now, "updated_at": now,
            })
        return rows

    async def _insert(
        self, connection: AsyncConnection, rows: list[dict[str, Any]], change: Change
    ) -> None:
        await connection.execute(insert(contacts), rows)
        await connection.execute(
            insert(contact_history),
            [
                {
                    "contact_id": row["id"], "from_status": None, "to_status": row["status"],
                    "source": change.source, "actor": change.actor, "reason": change.reason,
                    "at": row["created_at"],
                }
                for row in rows
            ],
        )

    async def get(self, contact_id: str) -> dict[str, Any]:
        async with self.db.connect() as connection:
            found = (
                await connection.execute(select(contacts).where(contacts.c.id == contact_id))
            ).first()
        if found is None:
            raise NotFound(f"no contact with id {contact_id}", id=contact_id)
        return dict(found._mapping)

    async def find(self, email: str) -> dict[str, Any] | None:
        """The contact with this address (compared lower-cased), or None."""
        async with self.db.connect() as connection:
            found = (
                await connection.execute(
                    select(contacts).where(contacts.c.email == email.strip().lower())
                )
            ).first()
        return dict(found._mapping) if found else None

    async def page(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        text: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``text`` matches the address, name, organisation or city."""
        query = select(contacts)
        if status:
            query = query.where(contacts.c.status == status)
        if tag:
            query = query.where(
                contacts.c.tags.cast(Text()).contains(_json_string(tag), autoescape=True)
            )
        if text:
            needle = text.lower()
            query = query.where(
                or_(
                    *(
                        func.lower(column).contains(needle, autoescape=True)
                        for column in (
                            contacts.c.email, contacts.c.name, contacts.c.organisation,
                            contacts.c.city,
                        )
                    )
                )
            )
        query = newest_first(
            query, contacts.c.created_at, contacts.c.id, cursor=cursor, limit=limit
        )
        async with self.db.connect() as connection:
            rows = [dict(row._mapping) for row in await connection.execute(query)]
        return page_of(rows, limit)

    async def update(
        self,
        contact_id: str,
        fields: ContactFields,
        change: Change,
        *,
        status: str | None = None,
    ) -> dict[str, Any]:
        """Change fields and, when given, move the status (checked against the lifecycle)."""
        values = fields.columns()
        now = time.time()
        async with self.db.transaction() as connection:
            current = (
                await connection.execute(
                    select(contacts.c.status)
                    .where(contacts.c.id == contact_id)
                    .with_for_update()
                )
            ).first()
            if current is None:
                raise NotFound(f"no contact with id {contact_id}", id=contact_id)
            moved = status is not None and status != current.status
            if status is not None:
                self.lifecycle.check_move(current.status, status)
            if moved:
                values["status"] = status
            if values:
                await connection.execute(
                    update(contacts)
                    .where(contacts.c.id == contact_id)
                    .values(**values, updated_at=now)
                )
            if moved:
                await _record(connection, contact_id, current.status, str(status), change, now)
        return await self.get(contact_id)

    async def delete(self, contact_id: str) -> None:
        """Remove a contact, its history and its enrolments."""
        async with self.db.transaction() as connection:
            result = await connection.execute(delete(contacts).where(contacts.c.id == contact_id))
            if not result.rowcount:
                raise NotFound(f"no contact with id {contact_id}", id=contact_id)
            await connection.execute(
                delete(contact_history).where(contact_history.c.contact_id == contact_id)
            )
            await connection.execute(
                delete(enrolments).where(enrolments.c.contact_id == contact_id)
            )

    async def history(self, contact_id: str) -> list[dict[str, Any]]:
        """Every move of the contact's status, oldest first (404 for an unknown contact)."""
        await self.get(contact_id)
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(contact_history)
                .where(contact_history.c.contact_id == contact_id)
                .order_by(contact_history.c.id)
            )
            return [dict(row._mapping) for row in rows]

    async def last_set_by(self, contact_id: str, source: str) -> str | None:
        """The status the latest move made by ``source`` (say ``user``) went to, or None."""
        async with self.db.connect() as connection:
            return (
                await connection.execute(
                    select(contact_history.c.to_status)
                    .where(contact_history.c.contact_id == contact_id,
                           contact_history.c.source == source)
                    .order_by(contact_history.c.id.desc())
                    .limit(1)
                )
            ).scalar()

    async def existing(self, emails: list[str]) -> set[str]:
        """Which of these (normalised) addresses are contacts already."""
        if not emails:
            return set()
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(contacts.c.email).where(contacts.c.email.in_(emails))
            )
            return {row.email for row in rows}


def _json_string(value: str) -> str:
    """How a string stands inside a JSON list (for a LIKE over the list's text)."""
    return json.dumps(value)


async def _record(
    connection: AsyncConnection,
    contact_id: str,
    from_status: str | None,
    to_status: str,
    change: Change,
    at: float,
) -> None:
    await connection.execute(
        insert(contact_history).values(
            contact_id=contact_id,
            from_status=from_status,
            to_status=to_status,
            source=change.source,
            actor=change.actor,
            reason=change.reason,
            at=at,
        )
    )
