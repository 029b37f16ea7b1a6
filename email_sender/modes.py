"""Service modes: normal, read-only, maintenance, shared by every node through the database.

The mode lives in the ``settings`` table so that every node and every restart sees the same one.
Each node caches it for ``refresh_seconds``; a change made through this node is seen at once.
Once the cache is stale, one read refreshes it and the requests arriving meanwhile wait on that
read rather than each reading the database.
"""

from __future__ import annotations

import asyncio
import enum
import time
from typing import Any

from sqlalchemy import select, update

from email_sender import metrics
from email_sender.db import audit
from email_sender.db.engine import Database
from email_sender.db.schema import settings as settings_table

MODE_KEY = "service_mode"
# How long a change of mode waits for a read already under way (the database bounds it too).
READ_WAIT_SECONDS = 5.0


class Mode(enum.StrEnum):
    NORMAL = "normal"
    READ_ONLY = "read_only"
    MAINTENANCE = "maintenance"

    @property
    def accepts_writes(self) -> bool:
        return self is Mode.NORMAL

    @property
    def delivers(self) -> bool:
        return self is Mode.NORMAL


class ModeStore:
    def __init__(self, db: Database, *, refresh_seconds: float = 1.0) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._mode = Mode.NORMAL
        self._details: dict[str, Any] = {}
        self._read_at = 0.0
        self._reading: asyncio.Task[Mode] | None = None

    @property
    def cached(self) -> Mode:
        """The last mode read, without touching the database (for hot paths)."""
        return self._mode

    async def current(self) -> Mode:
        if time.monotonic() - self._read_at >= self.refresh_seconds:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.create_task(self.reload(), name="mode_reload")
            # Shielded: a request that gives up does not cancel the read the others wait on.
            await asyncio.shield(self._reading)
        return self._mode

    async def describe(self) -> dict[str, Any]:
        mode = await self.current()
        return {"mode": mode.value, **self._details}

    async def reload(self) -> Mode:
        async with self.db.connect() as connection:
            row = (
                await connection.execute(
                    select(settings_table).where(settings_table.c.key == MODE_KEY)
                )
            ).first()
        if row is None:
            self._mode, self._details = Mode.NORMAL, {}
        else:
            self._mode = Mode(row.value["mode"])
            self._details = {
                "reason": row.value.get("reason"),
                "since": row.updated_at,
                "changed_by": row.updated_by,
            }
        self._read_at = time.monotonic()
        for mode in Mode:
            metrics.service_mode.labels(mode.value).set(1 if mode is self._mode else 0)
        return self._mode

    async def set(
        self, mode: Mode, *, actor: str, reason: str | None = None, client_ip: str | None = None
    ) -> Mode:
        """Persist ``mode`` for every node and write the change to the audit log."""
        reading = self._reading
        if reading is not None and not reading.done():
            # A read begun before the change must not land after it with the old mode.
            await asyncio.wait({reading}, timeout=READ_WAIT_SECONDS)
        previous = await self.reload()
        now = time.time()
        value = {"mode": mode.value, "reason": reason}
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(settings_table)
                .where(settings_table.c.key == MODE_KEY)
                .values(value=value, updated_at=now, updated_by=actor)
            )
            if result.rowcount == 0:
                await connection.execute(
                    settings_table.insert().values(
                        key=MODE_KEY, value=value, updated_at=now, updated_by=actor
                    )
                )
        await audit.record(
            self.db,
            actor=actor,
            action="mode_changed",
            target=MODE_KEY,
            details={"from": previous.value, "to": mode.value, "reason": reason},
            client_ip=client_ip,
        )
        return await self.reload()
