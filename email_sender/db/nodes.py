"""Node heartbeats: each process says every few seconds that it lives and what it runs."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import nodes

LIVE, LOST, STOPPED = "live", "lost", "stopped"


async def beat(db: Database, row: dict[str, Any]) -> None:
    """Insert or refresh this node's row (portable upsert: update, then insert if absent)."""
    values = {**row, "last_seen": time.time(), "status": LIVE}
    async with db.transaction() as connection:
        result = await connection.execute(
            update(nodes).where(nodes.c.node_id == row["node_id"]).values(**values)
        )
        if result.rowcount == 0:
            await connection.execute(nodes.insert().values(**values))


async def mark_stopped(db: Database, node_id: str) -> None:
    async with db.transaction() as connection:
        await connection.execute(
            update(nodes)
            .where(nodes.c.node_id == node_id)
            .values(status=STOPPED, last_seen=time.time())
        )


async def mark_lost(db: Database, stale_after: float) -> int:
    """Mark live nodes whose heartbeat is older than ``stale_after`` seconds as lost."""
    async with db.transaction() as connection:
        result = await connection.execute(
            update(nodes)
            .where(nodes.c.status == LIVE, nodes.c.last_seen < time.time() - stale_after)
            .values(status=LOST)
        )
        return result.rowcount


async def drop_stale(db: Database, stale_after: float) -> int:
    """Delete nodes that are lost or stopped, or whose heartbeat is stale; answer how many."""
    await mark_lost(db, stale_after)
    async with db.transaction() as connection:
        result = await connection.execute(delete(nodes).where(nodes.c.status != LIVE))
        return result.rowcount


async def list_nodes(db: Database, stale_after: float) -> list[dict[str, Any]]:
    await mark_lost(db, stale_after)
    async with db.connect() as connection:
        rows = await connection.execute(select(nodes).order_by(nodes.c.started_at))
        return [dict(row._mapping) for row in rows]
