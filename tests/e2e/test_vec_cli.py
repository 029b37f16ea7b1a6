"""``email-sender vectors collections|reindex`` as an operator runs them, in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from email_sender.db.engine import Database
from email_sender.mail.message import EmailIn, prepare_email
from email_sender.mail.outbox import Outbox
from email_sender.settings import MailSettings
from email_sender.vectors.edge import EdgeVectorStore

CLI = [sys.executable, "-m", "email_sender"]
ENV = {**os.environ, "EMAIL_SENDER__EMBEDDER__PROVIDER": "hashing", "CI": "true"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=ENV)


def fill_outbox(data_dir: Path, count: int) -> None:
    """Emails in SQL as the API would have accepted them, none indexed yet."""

    async def fill() -> None:
        database = Database(f"sqlite+aiosqlite:///{data_dir / 'email-sender.db'}")
        await database.start()
        outbox = Outbox(database, idempotency_retention=3600)
        limits = MailSettings()
        try:
            for n in range(count):
                email = EmailIn.model_validate(
                    {"from": "desk@venue.example", "to": [f"band{n}@example.org"],
                     "subject": f"Offer {n}", "text": f"Fee offer number {n} for the show."}
                )
                await outbox.accept(prepare_email(email, limits))
        finally:
            await database.stop()

    asyncio.run(fill())


def test_reindex_rebuilds_from_sql_and_collections_lists_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fill_outbox(data_dir, 23)

    empty = run("vectors", "collections", "--data-dir", str(data_dir))
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "no collections"

    rebuilt = run("vectors", "reindex", "--batch-size", "5", "--data-dir", str(data_dir), "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["points"] == 23
    assert json.loads(rebuilt.stdout)["collection"] == "emails"
    again = run("vectors", "reindex", "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert "✅ reindexed 23 points into 'emails'" in again.stdout
    tasks = run("vectors", "reindex", "--collection", "task_vectors", "--data-dir", str(data_dir))
    assert tasks.returncode == 0, tasks.stderr

    listed = run("vectors", "collections", "--data-dir", str(data_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    by_name = {item["name"]: item for item in json.loads(listed.stdout)}
    assert by_name["emails"]["points_count"] == 23
    assert by_name["emails"]["dimension"] == 384
    assert by_name["emails"]["backend"] == "qdrant-edge"
    assert by_name["task_vectors"]["points_count"] == 0
    lines = run("vectors", "collections", "--data-dir", str(data_dir)).stdout
    assert "emails: 23 points, 384-d Cosine, with words (sparse bm25), qdrant-edge" in lines
    assert "task_vectors: 0 points, 384-d Cosine, qdrant-edge" in lines
    assert by_name["emails"]["sparse"] is True

    upgraded = run("vectors", "upgrade", "--data-dir", str(data_dir))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "✅ 'emails' already has its sparse vector (23 points)" in upgraded.stdout


def test_bad_collection_and_a_held_store_are_clear_errors(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fill_outbox(data_dir, 1)

    unknown = run("vectors", "reindex", "--collection", "nope", "--data-dir", str(data_dir))
    assert unknown.returncode == 1
    assert "collection: 'nope' is not one of 'emails', 'task_vectors'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    async def hold_and_ask() -> subprocess.CompletedProcess[str]:
        store = EdgeVectorStore(data_dir / "qdrant")  # as a running service holds it
        try:
            return await asyncio.to_thread(run, "vectors", "collections", "--data-dir",
                                           str(data_dir))
        finally:
            await store.close()

    held = asyncio.run(hold_and_ask())
    assert held.returncode == 1
    assert "in use by another process" in held.stderr
    assert "Traceback" not in held.stderr
