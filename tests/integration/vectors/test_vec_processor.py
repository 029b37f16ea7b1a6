"""The vector processor indexes accepted mail off the send path, and rides out outages.

Real parts: SQLite and PostgreSQL, the Qdrant Edge store, the capture SMTP sink, the hashing
embedder. The only fault injected is a wrapper that makes the real store refuse calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from email_sender import metrics
from email_sender.db.schema import emails
from email_sender.service import Service, build_service
from email_sender.vectors.checksums import point_checksum
from email_sender.vectors.processor import VectorProcessor
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.vectors import fast_processor, flaky_store, install_flaky_store


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url, **{"embedder.provider": "hashing"})
    service = build_service(settings)
    install_flaky_store(service)
    fast_processor(service)
    async with service:
        yield service


@pytest.fixture
async def api(node: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(node) as http:
        yield http


def email(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "from": "Booking Desk <desk@venue.example>",
        "to": [f"Artist {n} <Artist{n}@Example.org>"],
        "subject": f"Availability for date {n}",
        "text": f"Hello, the hall is free on day {n}. Fee and rider attached.",
        "tags": ["booking"],
        **extra,
    }


async def states(node: Service) -> dict[str, tuple[str, str]]:
    async with node.db.connect() as connection:
        rows = await connection.execute(select(emails.c.id, emails.c.status, emails.c.vector_state))
        return {row.id: (row.status, row.vector_state) for row in rows}


async def all_indexed(node: Service, count: int) -> bool:
    found = await states(node)
    return len(found) == count and all(v == "indexed" for _, v in found.values())


async def test_accepted_emails_are_indexed_with_their_payload(
    node: Service, api: httpx.AsyncClient
) -> None:
    ids = []
    for n in range(4):
        extra: dict[str, Any] = {"metadata": {"campaign": "spring"}} if n == 0 else {}
        if n == 1:
            extra["headers"] = {"X-Campaign": "from-header"}
        answer = await api.post("/api/v1/emails", json=email(n, **extra))
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])

    await wait_for(lambda: all_indexed(node, 4), timeout=20)

    store = node.get("qdrant_manager").store
    assert await store.count("emails") == 4
    points = {p.id: p for p in await store.retrieve("emails", ids, with_vectors=True)}
    first = points[ids[0]]
    payload = dict(first.payload)
    checksum = payload.pop("checksum")
    assert payload == {
        "email_id": ids[0],
        "direction": "outbound",
        "from": "desk@venue.example",
        "to": ["artist0@example.org"],
        "subject": "Availability for date 0",
        "tags": ["booking"],
        "campaign": "spring",
        "status": payload["status"],
        "created_at": payload["created_at"],
        "embedding_model": "hashing-384",
        "lang": "en",
    }
    assert payload["status"] in ("queued", "sending", "sent")
    assert isinstance(payload["created_at"], float)
    # The words of the email, analysed in English, are its sparse vector, under its checksum.
    assert first.sparse is not None and len(first.sparse) > 3
    assert checksum == point_checksum(first.id, first.vector, payload, first.sparse)
    assert checksum != point_checksum(first.id, first.vector, payload)
    assert points[ids[1]].payload["campaign"] == "from-header"
    assert points[ids[2]].payload["campaign"] is None


async def test_an_outage_delays_indexing_but_never_mail_and_the_backlog_drains(
    node: Service, api: httpx.AsyncClient
) -> None:
    processor: VectorProcessor = node.get("vector_processor")
    store = flaky_store(node)
    store.down = True

    ids = []
    for n in range(12):
        answer = await api.post("/api/v1/emails", json=email(n))
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])

    async def all_sent() -> bool:
        found = await states(node)
        return len(found) == 12 and all(status == "sent" for status, _ in found.values())

    await wait_for(all_sent, timeout=30)
    assert {vector for _, vector in (await states(node)).values()} == {"pending"}
    # The gauge is process-wide: wait for this node's processor to have written it, not only to
    # have counted.
    await wait_for(
        lambda: processor.backlog == 12
        and metrics.REGISTRY.get_sample_value("email_sender_vector_backlog") == 12,
        timeout=10,
    )
    ready = (await api.get("/health/ready")).json()
    check = next(c for c in ready["checks"] if c["name"] == "qdrant_manager")
    assert not check["ok"]
    assert "connection refused" in check["detail"]
    assert "http://qdrant.test:6333" in check["error"]
    assert (await api.get("/health")).json()["status"] == "degraded"

    store.down = False
    await wait_for(lambda: all_indexed(node, 12), timeout=20)
    assert await store.count("emails") == 12
    await wait_for(lambda: processor.backlog == 0, timeout=10)
    ready = (await api.get("/health/ready")).json()
    assert next(c for c in ready["checks"] if c["name"] == "qdrant_manager")["ok"]
    assert processor.counters["failed"] == 0


async def test_an_email_the_store_refuses_fails_alone_after_its_attempts(
    node: Service, api: httpx.AsyncClient
) -> None:
    store = flaky_store(node)
    processor = node.get("vector_processor")
    store.down = True  # hold indexing so that the poisoned email shares a batch
    ids = [(await api.post("/api/v1/emails", json=email(n))).json()["id"] for n in range(5)]
    store.poison = {ids[2]}
    store.down = False

    async def settled() -> bool:
        found = await states(node)
        return all(found[i][1] != "pending" for i in ids)

    await wait_for(settled, timeout=20)
    found = await states(node)
    assert found[ids[2]][1] == "failed"
    assert [found[i][1] for i in ids if i != ids[2]] == ["indexed"] * 4
    async with node.db.connect() as connection:
        attempts = (
            await connection.execute(select(emails.c.vector_attempts).where(emails.c.id == ids[2]))
        ).scalar()
    assert attempts == processor.options.max_attempts


async def test_a_bulk_load_is_optimised_once_the_backlog_is_quiet(
    node: Service, api: httpx.AsyncClient
) -> None:
    processor: VectorProcessor = node.get("vector_processor")
    processor.options.optimize_after = 5
    processor.options.optimize_quiet_seconds = 0.3
    batch = await api.post("/api/v1/emails/batch", json={"emails": [email(n) for n in range(8)]})
    assert batch.json()["accepted"] == 8

    await wait_for(lambda: all_indexed(node, 8), timeout=20)
    await wait_for(lambda: processor.counters["optimized"] == 1, timeout=20)
    assert processor.counters["indexed"] == 8
    info = await node.get("qdrant_manager").store.collection_info("emails")
    assert info.points_count == 8
