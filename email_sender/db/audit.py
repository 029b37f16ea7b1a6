"""The audit log: who changed what, when, from where."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from email_sender.db.engine import Database
from email_sender.db.schema import audit_log
from email_sender.log import request_id_var


async def record(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> None:
    async with db.transaction() as connection:
        await record_in(
            connection, actor=actor, action=action, target=target, details=details,
            client_ip=client_ip,
        )


async def record_in(
    connection: AsyncConnection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> None:
    """The same, inside a transaction the caller holds: the change and its record, or neither."""
    await connection.execute(
        insert(audit_log).values(
            at=time.time(),
            actor=actor,
            action=action,
            target=target,
            details=details or {},
            request_id=request_id_var.get(),
            client_ip=client_ip,
        )
    )


async def recent(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    async with db.connect() as connection:
        rows = await connection.execute(
            select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        )
        return [dict(row._mapping) for row in rows]
