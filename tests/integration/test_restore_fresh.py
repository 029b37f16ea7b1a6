"""Restore into a fresh, empty database (another SQLite file, another PostgreSQL database), then
serve on it: old mail is there, new mail is delivered with its attempts, audit and suppressions
still write. Rows restored with their ids must not leave the id sequences behind them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.db.engine import Database
from email_sender.db.schema import attempts, audit_log, emails
from email_sender.ops import backup as backups
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings, Settings
from tests.conftest import _admin, _server_url, asgi_client, make_settings, wait_for
from tests.support.smtp_server import SmtpTestServer

FAST = {
    "delivery.backoff.base": 0.05,
    "delivery.backoff.max": 0.2,
    "delivery.backoff.jitter": 0.0,
    "delivery.poll_interval": 0.05,
    "embedder.provider": "hashing",
}


@pytest.fixture
def empty_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same engine as ``database_url``, with no tables at all."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'b' / 'email-sender.db'}"
        return
    name = f"es_empty_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield _server_url(name).replace("postgresql://", "postgresql+asyncpg://")
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def node_settings(root: Path, url: str, relay: SmtpTestServer) -> Settings:
    return make_settings(root, url, **FAST,
                         **{"smtp.relays": [RelaySettings(url=relay.url, tls="none")]})


def email(tag: str, n: int) -> dict[str, Any]:
    return {"from": "bookings@example.com", "to": [f"{tag}{n}@example.org"],
            "subject": f"{tag} {n}", "text": f"Booking {n} is confirmed."}


async def accept(http: httpx.AsyncClient, tag: str, count: int) -> list[str]:
    answer = await http.post("/api/v1/emails/batch",
                             json={"emails": [email(tag, n) for n in range(count)]})
    assert answer.status_code == 202, answer.text
    return [item["id"] for item in answer.json()["items"]]


async def all_sent(node: Service, ids: list[str]) -> bool:
    async with node.db.connect() as connection:
        rows = await connection.execute(select(emails.c.status).where(emails.c.id.in_(ids)))
        found = [row.status for row in rows]
    return len(found) == len(ids) and set(found) == {"sent"}


async def count(node: Service, column: Any, *where: Any) -> int:
    async with node.db.connect() as connection:
        return int((await connection.execute(
            select(func.count(column)).where(*where))).scalar() or 0)


async def test_restore_into_an_empty_database_then_deliver_audit_and_suppress(
    tmp_path: Path, database_url: str, empty_database_url: str, smtp_server: SmtpTestServer
) -> None:
    # Database A: mail delivered (attempt rows), modes changed (audit rows), a suppression.
    async with build_service(node_settings(tmp_path / "a", database_url, smtp_server)) as a:
        async with asgi_client(a) as http:
            old_ids = await accept(http, "old", 8)
            await wait_for(lambda: all_sent(a, old_ids), timeout=60)
            assert (await http.post("/api/v1/maintenance/readonly")).status_code == 200
            assert (await http.post("/api/v1/maintenance/disable")).status_code == 200
            assert (await http.post("/api/v1/suppressions",
                                    json={"address": "gone@example.org"})).status_code == 201
        old_attempts = await count(a, attempts.c.id)
        old_audit = await count(a, audit_log.c.id)
        assert old_attempts >= 8 and old_audit >= 3
        folder = await backups.create_backup(a.settings, a.db, None, dest=tmp_path / "backups")

    # Database B: empty (no tables); the restore migrates it and puts every row back.
    target = Database(empty_database_url, migrate=False)
    try:
        checks = await backups.restore_backup(node_settings(tmp_path / "b", empty_database_url,
                                                            smtp_server),
                                              target, None, folder, only="sql")
    finally:
        await target.stop()
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]

    received_before = len(smtp_server.messages())
    async with build_service(node_settings(tmp_path / "b", empty_database_url, smtp_server)) as b:
        assert await all_sent(b, old_ids)
        async with asgi_client(b) as http:
            new_ids = await accept(http, "new", 5)
            await wait_for(lambda: all_sent(b, new_ids), timeout=60)
            # Each new email has its own attempt row, numbered after the restored ones.
            assert await count(b, attempts.c.id, attempts.c.email_id.in_(new_ids)) == 5
            assert await count(b, attempts.c.id) == old_attempts + 5
            # Audit rows still insert: a mode change and a new suppression.
            assert (await http.post("/api/v1/maintenance/readonly")).status_code == 200
            assert (await http.post("/api/v1/maintenance/disable")).status_code == 200
            added = await http.post("/api/v1/suppressions", json={"address": "new@example.org"})
            assert added.status_code == 201, added.text
            listed = (await http.get("/api/v1/suppressions")).json()["items"]
            assert {row["address"] for row in listed} == {"gone@example.org", "new@example.org"}
        assert await count(b, audit_log.c.id) >= old_audit + 3
    assert len(smtp_server.messages()) == received_before + 5


async def test_reset_sequences_moves_every_generated_id_past_the_largest(
    tmp_path: Path, database_url: str
) -> None:
    """Found from the schema, not a list: every table with a generated id is covered."""
    from sqlalchemy import insert

    db = Database(database_url)
    await db.start()
    try:
        async with db.transaction() as connection:
            await connection.execute(insert(audit_log), [
                {"id": 41, "at": 1.0, "actor": "t", "action": "restored"}])
            next_ids = await backups.reset_sequences(connection)
        assert next_ids == {"audit_log.id": 42, "attempts.id": 1, "contact_history.id": 1,
                            "outreach_sends.id": 1}
        async with db.transaction() as connection:
            result = await connection.execute(
                insert(audit_log).values(at=2.0, actor="t", action="after").returning(
                    audit_log.c.id))
            assert result.scalar() == 42
    finally:
        await db.stop()
