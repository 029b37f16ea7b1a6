"""Backup, verify, restore and rollback as an operator runs them."""

import json
import shutil
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.e2e.test_serve import CLI, run, wait_until_up


def serve_and_send(data: Path, count: int) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(data), "--port", str(port), "--metrics-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
