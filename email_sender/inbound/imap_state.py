"""Where the IMAP poller stands in each folder, and which node reads a mailbox, in SQL.

A position is the folder's UIDVALIDITY and the highest UID already handed over (delivered, or
refused for good). It is saved after every message, so a poller that stops mid-mailbox (a crash,
a restart, another node taking over) starts again right after the last message it finished.

A mailbox is read by one node at a time: the poller holds a lease on it, renewed while it reads;
the other nodes' pollers stand by and take over once the lease is released or has run out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from email_sender.db.engine import Database
from email_sender.db.schema import imap_state


@dataclass(frozen=True)
class Position:
    uidvalidity: int
    last_uid: int


def mailbox_key(username: str, host: str, folder: str) -> str:
    """The row's key: ``user@host/folder``."""
    return f"{username}@{host}/{folder}"


class ImapPositions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, mailbox: str) -> Position | None:
        async with self.db.connect() as connection:
            row = (
                await connection.execute(
                    select(imap_state.c.uidvalidity, imap_state.c.last_uid).where(
                        imap_state.c.mailbox == mailbox
                    )
                )
            ).first()
        return None if row is None else Position(int(row.uidvalidity), int(row.last_uid))

    async def save(self, mailbox: str, position: Position) -> None:
        """Insert or replace the folder's position (one statement on SQLite and PostgreSQL)."""
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        values = {
            "uidvalidity": position.uidvalidity,
            "last_uid": position.last_uid,
            "updated_at": time.time(),
        }
        statement = dialect.insert(imap_state).values(mailbox=mailbox, **values)
        statement = statement.on_conflict_do_update(index_elements=["mailbox"], set_=values)
        async with self.db.transaction() as connection:
            await connection.execute(statement)
