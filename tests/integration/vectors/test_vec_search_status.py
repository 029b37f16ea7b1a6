"""A ``status`` search filter answers with the email's status now, not the one it had when it was
indexed: an email indexed while it waits, then delivered, is found by ``status: sent``.

Real parts: SQLite and PostgreSQL, the Qdrant Edge store, the hashing embedder, a real SMTP
relay that first defers (451), then accepts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from email_sender.db.schema import emails
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.smtp_server import SmtpTestServer
from tests.support.vectors import fast_processor


@pytest.fixture
async def node(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> AsyncIterator[Service]:
    smtp_server.mode = "451"  # nothing can be sent before the test says so
    settings = make_settings(tmp_path, database_url, **{
        "embedder.provider": "hashing",
        "smtp.relays": [RelaySettings(url=smtp_server.url, tls="none")],
        "delivery.backoff.base": 0.05,
        "delivery.backoff.max": 0.2,
        "delivery.backoff.jitter": 0.0,
        "delivery.poll_interval": 0.05,
        "delivery.max_attempts": 100,
    })
    service = build_service(settings)
    fast_processor(service)
    async with service:
        yield service


async def row(node: Service, email_id: str) -> Any:
    async with node.db.connect() as connection:
        return (await connection.execute(
            select(emails.c.status, emails.c.vector_state).where(emails.c.id == email_id)
        )).one()


async def search(http: httpx.AsyncClient, **filter: Any) -> list[str]:
    answer = await http.post("/api/v1/search", json={
        "query": "hall availability in May", "limit": 5, "filter": filter})
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["results"]]


async def test_a_status_filter_sees_the_status_after_delivery(
    node: Service, smtp_server: SmtpTestServer
) -> None:
    async with asgi_client(node) as http:
        ids = []
        for n in range(3):
            accepted = await http.post("/api/v1/emails", json={
                "from": "desk@venue.example", "to": [f"ana{n}@band.example"],
                "subject": f"Hall availability in May {n}",
                "text": "The concert hall is available on the 12th of May."})
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["id"])
        delivered = ids[0]
        # The two others bounce (550): failed, never sent.
        smtp_server.refuse_recipients.update({"ana1@band.example", "ana2@band.example"})

        async def indexed_unsent() -> bool:
            rows = [await row(node, email_id) for email_id in ids]
            return all(r.vector_state == "indexed" and r.status != "sent" for r in rows)

        await wait_for(indexed_unsent, timeout=30)
        store = await node.get("qdrant_manager").ready_store()
        indexed_as = (await store.retrieve("emails", [delivered]))[0].payload["status"]
        assert indexed_as in {"queued", "sending", "deferred"}

        smtp_server.mode = "250"
        await wait_for(lambda: _status_is(node, delivered, "sent"), timeout=30)

        assert await search(http, status="sent") == [delivered]
        assert sorted(await search(http, status=["sent", "failed"])) == sorted(ids)
        assert await search(http, status=["queued", "deferred", "sending"]) == []
        # The payload itself still says what it said at index time; only the filter moved.
        assert (await store.retrieve("emails", [delivered]))[0].payload["status"] != "sent"


async def _status_is(node: Service, email_id: str, status: str) -> bool:
    return bool((await row(node, email_id)).status == status)


async def test_a_status_filter_that_is_not_a_status_is_a_422_naming_the_field(
    node: Service,
) -> None:
    async with asgi_client(node) as http:
        answer = await http.post("/api/v1/search", json={
            "query": "hall", "filter": {"status": {"gte": 1}}})
    assert answer.status_code == 422
    assert "status" in answer.text
