"""Backup, verify, restore and rollback as an operator runs them."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_URL, _admin, _server_url, free_port
from tests.e2e.test_serve import CLI, run, serve_env, wait_until_up


def serve_and_send(data: Path, count: int, **settings: object) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(data), "--port", str(port), "--metrics-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=serve_env(**settings),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        for n in range(count):
            answer = httpx.post(f"{url}/api/v1/emails", json={
                "from": "ops@example.com", "to": [f"u{n}@example.org"], "subject": f"s{n}",
                "text": "t"})
            assert answer.status_code == 202
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_backup_verify_restore_and_rollback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve_and_send(data, 5)
    created = run("backup", "create", "--data-dir", str(data), "--json")
    assert created.returncode == 0, created.stderr
    folder = Path(json.loads(created.stdout)["path"])
    assert json.loads(created.stdout)["manifest"]["tables"]["emails"] == 5

    listed = run("backup", "list", "--data-dir", str(data), "--json")
    assert [row["name"] for row in json.loads(listed.stdout)] == [folder.name]

    verified = run("backup", "verify", str(folder))
    assert verified.returncode == 0, verified.stdout
    assert "❌" not in verified.stdout

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    sql = damaged / "sql" / "email-sender.db"
    raw = bytearray(sql.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    sql.write_bytes(bytes(raw))
    refused = run("backup", "verify", str(damaged))
    assert refused.returncode == 1
    assert "❌ file sql/email-sender.db: sha256 differs" in refused.stdout
    restore_damaged = run("backup", "restore", str(damaged), "--data-dir", str(data))
    assert restore_damaged.returncode == 1
    assert "refused: the backup does not verify" in restore_damaged.stdout

    dry = run("backup", "restore", str(folder), "--data-dir", str(data), "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout

    serve_and_send(data, 3)  # state moves on after the backup
    stopped = run("rollback", "--services-only", "--data-dir", str(data))
    assert stopped.returncode == 0
    assert "✅ maintenance mode" in stopped.stdout
    back = run("rollback", "--to", str(folder), "--data-dir", str(data))
    assert back.returncode == 0, back.stdout + back.stderr
    assert "✅ emergency backup" in back.stdout
    assert "✅ restored rows emails: 5 of 5" in back.stdout
    assert "✅ normal mode" in back.stdout
    assert len(json.loads(run("backup", "list", "--data-dir", str(data), "--json").stdout)) == 2

    bad = run("backup", "restore", str(folder), "--data-dir", str(data), "--only", "nope")
    assert bad.returncode == 2 and "must be sql or vectors" in bad.stderr
    neither = run("rollback", "--data-dir", str(data))
    assert neither.returncode == 2 and "exactly one of" in neither.stderr


@pytest.fixture
def two_pg_databases(pg_template: str) -> Iterator[tuple[str, str]]:
    """Database A (migrated) and database B (empty, no tables), as plain PostgreSQL URLs."""
    names = (f"es_a_{uuid.uuid4().hex[:10]}", f"es_b_{uuid.uuid4().hex[:10]}")
    asyncio.run(_admin(f'CREATE DATABASE "{names[0]}" TEMPLATE "{pg_template}"'))
    asyncio.run(_admin(f'CREATE DATABASE "{names[1]}"'))
    yield _async_url(names[0]), _async_url(names[1])
    for name in names:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _async_url(name: str) -> str:
    assert PG_URL.startswith("postgresql://")
    return _server_url(name).replace("postgresql://", "postgresql+asyncpg://")


@pytest.mark.postgres
def test_restore_into_an_empty_postgres_database_then_serve(
    tmp_path: Path, two_pg_databases: tuple[str, str]
) -> None:
    """The operator's path: back up A, restore into an empty B, serve B and send."""
    url_a, url_b = two_pg_databases
    serve_and_send(tmp_path / "a", 4, database__url=url_a)
    env_a = {**os.environ, "EMAIL_SENDER__DATABASE__URL": url_a}
    created = run("backup", "create", "--data-dir", str(tmp_path / "a"), "--no-vectors", "--json",
                  env=env_a)
    assert created.returncode == 0, created.stderr
    folder = Path(json.loads(created.stdout)["path"])

    env_b = {**os.environ, "EMAIL_SENDER__DATABASE__URL": url_b}
    restored = run("backup", "restore", str(folder), "--data-dir", str(tmp_path / "b"),
                   "--only", "sql", env=env_b)
    # The mode is put back after the restore: an audit row written into the restored tables.
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "✅ restored rows emails: 4 of 4" in restored.stdout
    assert "✅ mode: back to normal" in restored.stdout

    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "b"), "--port", str(port),
         "--metrics-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=serve_env(database__url=url_b),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        ids = []
        for n in range(3):
            answer = httpx.post(f"{url}/api/v1/emails", json={
                "from": "ops@example.com", "to": [f"new{n}@example.org"], "subject": f"n{n}",
                "text": "t"})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        assert _settles(url, ids), [httpx.get(f"{url}/api/v1/emails/{i}").json() for i in ids]
        listed = httpx.get(f"{url}/api/v1/emails", params={"limit": 100}).json()["items"]
        assert len(listed) == 7
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _settles(url: str, ids: list[str]) -> bool:
    """Every email reaches ``sent`` with an attempt row (the capture sink takes the mail)."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        emails = [httpx.get(f"{url}/api/v1/emails/{email_id}").json() for email_id in ids]
        if all(email["status"] == "sent" and email["attempts"] for email in emails):
            return True
        time.sleep(0.3)
    return False
