"""A collection made before search by words: served densely with the upgrade pending, then
upgraded in place by ``vectors upgrade`` (dense vectors kept byte for byte, every point under a
checksum covering both vectors), and resumed when a run stopped half-way; SQLite and PostgreSQL,
Qdrant Edge."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from email_sender.db.schema import emails
from email_sender.errors import NotFound
from email_sender.ops.upgrade import STAGING_SUFFIX, _copy_with_words, _verify_copy, upgrade
from email_sender.service import Service, build_service
from email_sender.settings import Settings
from email_sender.vectors.checksums import point_checksum
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.factory import EMAIL_PAYLOAD_INDEXES
from email_sender.vectors.sparse import TextAnalyser
from email_sender.vectors.store import Point
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.vectors import fast_processor

MAILS = [
    ("Date confirmée", "La date du 12 mars à Quimperlé (L'Échonova) est confirmée."),
    ("Date confirmée", "La date du 14 mars à Rennes (Le Jardin Moderne) est confirmée."),
    ("Fee offer", "We can offer a fee of 900 euros for the show in Leeds."),
]
# A point made by another tool: no email or message of that id in SQL.
FOREIGN_ID = "7f0b6c1e-3c1a-4b7e-9d2a-0c6f4e1b2a99"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, **{"embedder.provider": "hashing"})


async def make_dense_only_collection(settings: Settings) -> None:
    store = EdgeVectorStore(settings.qdrant_path)
    await store.ensure_collection("emails", 384, "Cosine", EMAIL_PAYLOAD_INDEXES)
    vector = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
    payload = {"email_id": FOREIGN_ID, "direction": "outbound"}
    checksum = point_checksum(FOREIGN_ID, vector, payload)
    await store.upsert("emails", [Point(FOREIGN_ID, vector, {**payload, "checksum": checksum})])
    await store.close()


@pytest.fixture
async def old_node(settings: Settings) -> AsyncIterator[Service]:
    await make_dense_only_collection(settings)
    node = build_service(settings)
    fast_processor(node)
    async with node:
        yield node


async def accept_and_index(node: Service) -> list[str]:
    ids = []
    async with asgi_client(node) as api:
        for subject, text in MAILS:
            answer = await api.post("/api/v1/emails", json={
                "from": "booking@band.example", "to": ["desk@venue.example"],
                "subject": subject, "text": text,
            })
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])

    async def indexed() -> bool:
        async with node.db.connect() as connection:
            rows = await connection.execute(select(emails.c.vector_state))
            return [row.vector_state for row in rows] == ["indexed"] * len(MAILS)

    await wait_for(indexed, timeout=20)
    return ids


async def search(node: Service, **body: Any) -> httpx.Response:
    async with asgi_client(node) as api:
        return await api.post("/api/v1/search", json=body)


async def dense_vectors(store: EdgeVectorStore) -> dict[str, bytes]:
    return {
        point.id: np.asarray(point.vector, dtype="<f4").tobytes()
        async for batch in store.scroll("emails") for point in batch
    }


async def test_an_old_collection_is_served_densely_then_upgraded_without_loss(
    settings: Settings, old_node: Service
) -> None:
    ids = await accept_and_index(old_node)
    manager = old_node.get("qdrant_manager")
    assert manager.upgrade_pending is True
    health = await manager.health()
    assert "upgrade pending" in health.detail
    # Hybrid answers by meaning alone; words alone are refused with the way out.
    hybrid = await search(old_node, query="Quimperlé")
    assert hybrid.status_code == 200 and len(hybrid.json()["results"]) == 4
    refused = await search(old_node, query="Quimperlé", mode="sparse")
    assert refused.status_code == 409
    assert "vectors upgrade" in refused.json()["error"]["message"]
    await old_node.stop()

    store = EdgeVectorStore(settings.qdrant_path)
    before = await dense_vectors(store)
    db = old_node.db
    await db.start()
    try:
        seen: list[int] = []
        result = await upgrade(db, store, TextAnalyser(), "emails", batch_size=2,
                               progress=seen.append)
        assert (result.points, result.with_words, sum(seen)) == (4, 3, 4)
        assert await store.has_sparse("emails")
        assert "emails" + STAGING_SUFFIX not in await store.list_collections()
        assert await dense_vectors(store) == before
        points = {p.id: p for batch in [b async for b in store.scroll("emails")] for p in batch}
        for point in points.values():
            payload = dict(point.payload)
            stated = payload.pop("checksum")
            assert stated == point_checksum(point.id, point.vector, payload, point.sparse)
        assert points[FOREIGN_ID].sparse is None and "lang" not in points[FOREIGN_ID].payload
        assert points[ids[0]].payload["lang"] == "fr" and points[ids[2]].payload["lang"] == "en"
        again = await upgrade(db, store, TextAnalyser(), "emails")
        assert again.already and again.points == 4
    finally:
        await store.close()
        await db.stop()

    node = build_service(settings)
    async with node:
        assert node.get("qdrant_manager").upgrade_pending is False
        found = await search(node, query="quimperle", mode="sparse")
        assert [hit["id"] for hit in found.json()["results"]] == [ids[0]]
        first = await search(node, query="Jardin Moderne")
        assert first.json()["results"][0]["id"] == ids[1]


async def test_an_upgrade_stopped_after_its_copy_is_finished_by_the_next_run(
    settings: Settings, old_node: Service
) -> None:
    await accept_and_index(old_node)
    await old_node.stop()
    store = EdgeVectorStore(settings.qdrant_path)
    db = old_node.db
    await db.start()
    try:
        before = await dense_vectors(store)
        info = await store.collection_info("emails")
        staging = "emails" + STAGING_SUFFIX
        await _copy_with_words(db, store, TextAnalyser(), info, staging, 256, None)
        await _verify_copy(store, "emails", staging, 256)
        # The run stops just after dropping the original.
        await store.delete_collection("emails")
        result = await upgrade(db, store, TextAnalyser(), "emails")
        assert result.points == 4 and result.with_words is None
        assert await dense_vectors(store) == before
        assert await store.has_sparse("emails")
        assert staging not in await store.list_collections()
        with pytest.raises(NotFound):
            await upgrade(db, store, TextAnalyser(), "missing")
    finally:
        await store.close()
        await db.stop()


def test_the_upgrade_command_refuses_a_store_the_service_holds(
    settings: Settings, tmp_path: Path
) -> None:
    holder = EdgeVectorStore(settings.qdrant_path)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "email_sender", "vectors", "upgrade", "--json",
             "--data-dir", str(settings.data_dir)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        import asyncio

        asyncio.run(holder.close())
    assert done.returncode == 1
    assert "in use by another process" in done.stderr
