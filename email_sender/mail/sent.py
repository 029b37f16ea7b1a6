"""Emails after sending, as received mail sees them: found by Message-ID or by recipient, their
recipients, and the statuses an answer moves them to (``bounced``, ``replied``).

The outbox owns sending; this is the one other place that reads or moves an email, so the
inbound side never writes the ``emails`` table itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, func, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import emails
from email_sender.mail.message import address_of


class SentEmails:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_message_id(self, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Our emails among ``message_ids`` (as ``<id@host>``), by Message-ID."""
        if not message_ids:
            return {}
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(emails.c.id, emails.c.message_id, emails.c.status).where(
                    emails.c.message_id.in_(list(message_ids))
                )
            )
            return {row.message_id: dict(row._mapping) for row in rows}

    async def exists(self, email_id: str) -> bool:
        async with self.db.connect() as connection:
            found = await connection.execute(select(emails.c.id).where(emails.c.id == email_id))
            return found.first() is not None

    async def follow_ups(self, first: dict[str, Any], *, limit: int) -> list[str]:
        """Ids of our later emails whose headers (References, In-Reply-To) name the first one's
        Message-ID, oldest first."""
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(emails.c.id)
                .where(
                    # Later emails only: the index on created_at bounds the scan.
                    emails.c.created_at >= first["created_at"],
                    emails.c.headers.cast(Text()).contains(first["message_id"], autoescape=True),
                    emails.c.id != first["id"],
                )
                .order_by(emails.c.created_at)
                .limit(limit)
            )
            return [row.id for row in rows]

    async def recent_to(self, address: str, *, since: float, limit: int) -> list[Any]:
        """Sent emails addressed to ``address`` since ``since``, newest first (id, subject)."""
        address = address.lower()
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(emails.c.id, emails.c.subject, emails.c.to_addrs)
                .where(
                    func.lower(emails.c.to_addrs.cast(Text())).contains(address, autoescape=True),
                    emails.c.sent_at.is_not(None),
                    # The index on created_at bounds the scan.
                    emails.c.created_at >= since,
                )
                .order_by(emails.c.created_at.desc())
                .limit(limit)
            )
            return [
                row for row in rows
                if address in {address_of(value).lower() for value in row.to_addrs or []}
            ]

    async def recipients(self, email_id: str) -> set[str]:
        """Every address the email was sent to (To, Cc, Bcc), lower-cased."""
        async with self.db.connect() as connection:
            row = (
                await connection.execute(
                    select(emails.c.to_addrs, emails.c.cc_addrs, emails.c.bcc_addrs).where(
                        emails.c.id == email_id
                    )
                )
            ).first()
        if row is None:
            return set()
        return {
            address_of(value).lower()
            for values in (row.to_addrs, row.cc_addrs, row.bcc_addrs)
            for value in values or []
        }

    async def mark(self, email_id: str, status: str, *, allowed: Sequence[str]) -> bool:
        """Move the email to ``status`` if it is in one of ``allowed``; answer whether it moved."""
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(emails)
                .where(emails.c.id == email_id, emails.c.status.in_(list(allowed)))
                .values(status=status, updated_at=time.time())
            )
        return bool(result.rowcount)
