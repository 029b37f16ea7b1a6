"""Named leases in SQL: one owner at a time, taken over once released or run out.

The IMAP poller holds one per mailbox (named ``user@host``); the outreach scheduler holds one so
that a single node schedules. The table is ``imap_leases``, where the first of them lived.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, or_
from sqlalchemy.dialects import postgresql, sqlite

from email_sender.db.engine import Database
from email_sender.db.schema import imap_leases


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def hold(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew the lease called ``name`` for ``seconds``; False while another owner
        holds it."""
        now = time.time()
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        values = {"owner": owner, "lease_until": now + seconds}
        statement = dialect.insert(imap_leases).values(mailbox=name, **values)
        statement = statement.on_conflict_do_update(
            index_elements=["mailbox"],
            set_=values,
            where=or_(imap_leases.c.owner == owner, imap_leases.c.lease_until < now),
        )
        async with self.db.transaction() as connection:
            result = await connection.execute(statement)
        return bool(result.rowcount)

    async def release(self, name: str, owner: str) -> None:
        async with self.db.transaction() as connection:
            await connection.execute(
                delete(imap_leases).where(
                    imap_leases.c.mailbox == name, imap_leases.c.owner == owner
                )
            )
