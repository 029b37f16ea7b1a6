"""Backups on SQLite and PostgreSQL: backup → wipe → restore gives identical API answers;
a flipped byte is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import delete

from email_sender.api.app import create_app
from email_sender.db import audit
from email_sender.db.schema import emails, metadata
from email_sender.inbound.receiver import Envelope
from email_sender.ops import backup as backups
from email_sender.outreach.contacts import Change
from email_sender.outreach.fields import ContactFields, NewContact
from email_sender.service import Service, build_service
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.store import Point
from tests.conftest import make_settings


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> Any:
    settings = make_settings(tmp_path, database_url)
    service = build_service(settings, role="api")
    await service.start()
    store = EdgeVectorStore(tmp_path / "vectors")
    try:
        yield service, store
    finally:
        await store.close()
        await service.stop()


async def fill(service: Service, store: EdgeVectorStore) -> list[str]:
    from email_sender.mail.message import EmailIn

    ids = []
    for n in range(25):
        accepted = await service.intake.accept(EmailIn.model_validate({
            "from": "ops@example.com", "to": [f"guest{n}@example.org"],
            "subject": f"Booking {n}", "text": f"Room {n} is confirmed.", "tags": ["booking"],
        }))
        ids.append(accepted.id)
    await service.suppressions.add("gone@example.org", reason="hard_bounce", smtp_code=550)
    # A received reply and the operator's label: the classifier's training data travels too.
    assert service.inbound is not None
    reply = await service.inbound.receive(
        b"From: venue@example.org\r\nTo: ops@example.com\r\nSubject: Re: Booking 1\r\n"
        b"Message-ID: <reply-1@example.org>\r\n\r\nPas cette fois, merci.\r\n",
        Envelope(via="webhook"),
    )
    row = await service.inbound.store.get(reply.id)
    await service.inbound.store.save_label(row, "declined", actor="ops")
    # A contact and a move of its status: the outreach history travels too.
    contact = await service.contacts.create(
        NewContact(email="venue@example.org", timezone="Europe/Paris"), Change("user", "ops")
    )
    await service.contacts.update(
        contact["id"], ContactFields(), Change("user", "ops", "wrote"), status="contacted"
    )
    rng = np.random.default_rng(7)
    await store.ensure_collection("emails", 8, "Cosine", {"tags": "keyword"})
    await store.upsert("emails", [
        Point(email_id, rng.normal(size=8).astype(np.float32), {"tags": ["booking"], "n": n})
        for n, email_id in enumerate(ids)
    ])
    return ids


async def api_answers(service: Service, ids: list[str]) -> list[Any]:
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        answers = [(await http.get("/api/v1/emails", params={"limit": 100})).json(),
                   (await http.get("/api/v1/suppressions")).json(),
                   (await http.get("/api/v1/inbound")).json(),
                   (await http.get("/api/v1/contacts")).json()]
        answers += [(await http.get(f"/api/v1/emails/{email_id}")).json() for email_id in ids]
        for contact in answers[3]["items"]:
            answers.append((await http.get(f"/api/v1/contacts/{contact['id']}/history")).json())
    return answers


async def test_backup_wipe_restore_gives_identical_answers(node: Any) -> None:
    service, store = node
    ids = await fill(service, store)
    before = await api_answers(service, ids)
    digest_before = await backups._digest(store, "emails")

    folder = await backups.create_backup(service.settings, service.db, store)
    assert all(check.ok for check in await backups.verify_backup(folder))
    manifest = backups.read_manifest(folder)
    assert manifest["tables"]["emails"] == 25
    assert manifest["collections"]["emails"]["points"] == 25

    async with service.db.transaction() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(delete(table))
    await store.delete_collection("emails")
    assert (await api_answers(service, []))[0]["items"] == []

    checks = await backups.restore_backup(service.settings, service.db, store, folder)
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]
    assert await api_answers(service, ids) == before
    assert [label["intent"] for label in await service.inbound.store.labels()] == ["declined"]
    assert await backups._digest(store, "emails") == digest_before


@pytest.mark.parametrize("target", ["sql", "vectors", "manifest"])
async def test_a_flipped_byte_is_refused_and_changes_nothing(node: Any, target: str) -> None:
    service, store = node
    await fill(service, store)
    folder = await backups.create_backup(service.settings, service.db, store)
    victim = {
        "sql": next((folder / "sql").iterdir()),
        "vectors": folder / "vectors" / "emails.jsonl.gz",
        "manifest": folder / "config.yaml",
    }[target]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    checks = await backups.verify_backup(folder)
    assert not all(check.ok for check in checks)
    assert any("sha256 differs" in check.detail for check in checks)

    async with service.db.transaction() as connection:
        await connection.execute(delete(emails).where(emails.c.subject == "Booking 3"))
    result = await backups.restore_backup(service.settings, service.db, store, folder)
    assert result[-1].name == "restore" and not result[-1].ok
    assert "does not verify" in result[-1].detail
    # Nothing was put back: the deleted row is still gone.
    listed = (await api_answers(service, []))[0]["items"]
    assert len(listed) == 24


async def test_a_missing_folder_or_manifest_is_a_clear_error(tmp_path: Path) -> None:
    from email_sender.errors import NotFound

    with pytest.raises(NotFound, match="is not a backup"):
        await backups.verify_backup(tmp_path)


async def test_admins_back_up_list_and_verify_over_the_api(tmp_path: Path) -> None:
    from email_sender.settings import ApiKeySettings
    from tests.conftest import asgi_client

    keys = [ApiKeySettings(name="ops", key="ops-key", scopes=["admin"]),  # type: ignore[arg-type]
            ApiKeySettings(name="app", key="app-key", scopes=["send", "read"])]  # type: ignore[arg-type]
    settings = make_settings(tmp_path, None, **{"security.api_keys": keys,
                                                 "embedder.provider": "hashing"})
    service = build_service(settings)
    await service.start()
    try:
        async with asgi_client(service) as http:
            admin = {"Authorization": "Bearer ops-key"}
            assert (await http.post("/api/v1/backups",
                                    headers={"Authorization": "Bearer app-key"})).status_code == 403
            created = await http.post("/api/v1/backups", headers=admin)
            assert created.status_code == 201, created.text
            name = created.json()["name"]
            assert set(created.json()["collections"]) >= {"emails", "task_vectors"}
            listed = (await http.get("/api/v1/backups", headers=admin)).json()["items"]
            assert [row["name"] for row in listed] == [name]
            verified = (await http.get(f"/api/v1/backups/{name}/verify", headers=admin)).json()
            assert verified["ok"] is True
            assert (await http.get("/api/v1/backups/..%2Fetc/verify", headers=admin)
                    ).status_code == 404
            assert (await http.get("/api/v1/backups/nope/verify", headers=admin)).status_code == 404
        audited = [row["action"] for row in await audit.recent(service.db)]
        assert "backup_created" in audited and "backup_verified" in audited
    finally:
        await service.stop()
