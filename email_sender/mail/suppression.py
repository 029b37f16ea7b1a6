"""The suppression list: addresses we no longer send to (hard bounces, complaints, by hand)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select

from email_sender.db.engine import Database
from email_sender.db.schema import suppressions
from email_sender.errors import DuplicateKey, NotFound


def normalise(address: str) -> str:
    return address.strip().lower()


class SuppressionList:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        address: str,
        *,
        reason: str,
        smtp_code: int | None = None,
        detail: str | None = None,
        email_id: str | None = None,
    ) -> bool:
        """Suppress ``address``; answer False when it already was."""
        try:
            async with self.db.transaction() as connection:
                await connection.execute(
                    insert(suppressions).values(
                        address=normalise(address),
                        reason=reason,
                        smtp_code=smtp_code,
                        detail=detail,
                        email_id=email_id,
                        created_at=time.time(),
                    )
                )
        except DuplicateKey:
            return False
        return True

    async def remove(self, address: str) -> None:
        async with self.db.transaction() as connection:
            result = await connection.execute(
                delete(suppressions).where(suppressions.c.address == normalise(address))
            )
        if result.rowcount == 0:
            raise NotFound(f"{address} is not suppressed", address=address)

    async def among(self, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` (normalised) are suppressed."""
        wanted = {normalise(address) for address in addresses}
        if not wanted:
            return set()
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(suppressions.c.address).where(suppressions.c.address.in_(wanted))
            )
            return {row.address for row in rows}

    async def page(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(suppressions).order_by(suppressions.c.address).limit(limit + 1)
        if cursor:
            query = query.where(suppressions.c.address > cursor)
        async with self.db.connect() as connection:
            rows = [dict(row._mapping) for row in await connection.execute(query)]
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, rows[-1]["address"]
        return rows, None
