"""``email-sender contacts import`` as an operator runs it, in a subprocess, on SQLite and
PostgreSQL: the same report as the API's import, a bar only on a terminal, and a file that
cannot be read refused whole with nothing stored."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select as io_select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from email_sender.db.engine import Database
from email_sender.db.schema import audit_log, contact_history, contacts
from email_sender.outreach.contacts import Change, ContactStore
from email_sender.outreach.fields import NewContact
from email_sender.outreach.lifecycle import Lifecycle
from email_sender.settings import LifecycleSettings

CLI = [sys.executable, "-m", "email_sender"]

CSV = (
    "email,name,city,timezone,tags,capacity\r\n"
    "salle@lemans.example,Le Mans Live,Le Mans,Europe/Paris,salle;ouest,800\r\n"
    "broken-address,Nowhere,,,,\r\n"
    "club@brest.example,Club,Brest,Mars/Olympus,,\r\n"
    "festival@quimper.example,Festival,Quimper,Europe/Paris,,5000\r\n"
    "SALLE@lemans.example,Duplicate,,,,\r\n"
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    """The CLI's environment: this test's database, and CI (so no bar) unless a test unsets it."""
    return {**os.environ, "EMAIL_SENDER__DATABASE__URL": database_url, "CI": "true"}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)


def stored(database_url: str) -> list[dict[str, Any]]:
    """Every contact with its history, and the import audit records."""

    async def read() -> list[dict[str, Any]]:
        database = Database(database_url)
        await database.start()
        try:
            async with database.connect() as connection:
                people = [dict(row._mapping) for row in await connection.execute(
                    select(contacts.c.email, contacts.c.city, contacts.c.tags,
                           contacts.c.attributes).order_by(contacts.c.email))]
                moves = [tuple(row) for row in await connection.execute(
                    select(contact_history.c.source, contact_history.c.actor))]
                audits = [dict(row._mapping) for row in await connection.execute(
                    select(audit_log.c.actor, audit_log.c.action, audit_log.c.details))]
            return [*people, {"history": sorted(moves)}, {"audit": audits}]
        finally:
            await database.stop()

    return asyncio.run(read())


def add_contact(database_url: str, email: str) -> None:
    async def add() -> None:
        database = Database(database_url)
        await database.start()
        try:
            store = ContactStore(database, Lifecycle(LifecycleSettings()))
            await store.create(NewContact(email=email), Change("user", "test"))
        finally:
            await database.stop()

    asyncio.run(add())


def test_a_csv_import_reports_every_row_and_keeps_the_good_ones(
    tmp_path: Path, data_dir: Path, env: dict[str, str], database_url: str
) -> None:
    add_contact(database_url, "festival@quimper.example")
    file = tmp_path / "venues.csv"
    file.write_text(CSV)
    answer = run(env, "contacts", "import", str(file), "--data-dir", str(data_dir), "--json")
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert (report["created"], report["exists"], report["error"]) == (1, 2, 2)
    rows = {row["row"]: row for row in report["rows"]}
    assert [(rows[n]["status"], [e["field"] for e in rows[n]["errors"]]) for n in range(1, 6)] == [
        ("created", []), ("error", ["email"]), ("error", ["timezone"]), ("exists", []),
        ("exists", [])]
    assert answer.stderr == ""  # CI: no bar
    *people, history, audit = stored(database_url)
    assert [person["email"] for person in people] == [
        "festival@quimper.example", "salle@lemans.example"]
    assert people[1] == {"email": "salle@lemans.example", "city": "Le Mans",
                         "tags": ["salle", "ouest"], "attributes": {"capacity": "800"}}
    assert history == {"history": [("import", "cli"), ("user", "test")]}
    assert audit == {"audit": [{"actor": "cli", "action": "contacts_imported", "details": {
        "created": 1, "exists": 2, "error": 2, "file": "venues.csv"}}]}

    # The same file again, as lines: every good row exists now; errors name their rows.
    again = run(env, "contacts", "import", str(file), "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == "venues.csv: 0 created, 3 exists, 2 error"
    assert lines[1].startswith("  row 2: email: ")
    assert lines[2].startswith("  row 3: timezone: 'Mars/Olympus' is not an IANA time zone")


def test_json_lines_by_flag_whatever_the_extension(
    tmp_path: Path, data_dir: Path, env: dict[str, str], database_url: str
) -> None:
    file = tmp_path / "export.txt"
    file.write_text("\n".join([
        json.dumps({"email": "a@venue.example", "status": "contacted", "tags": ["salle"]}),
        "not json",
        json.dumps({"email": "b@venue.example", "status": "famous"}),
    ]))
    refused = run(env, "contacts", "import", str(file), "--data-dir", str(data_dir))
    assert refused.returncode == 2
    assert "--format" in refused.stderr
    answer = run(env, "contacts", "import", str(file), "--format", "jsonl",
                 "--data-dir", str(data_dir), "--json")
    assert answer.returncode == 0, answer.stderr
    assert [(row["status"], row["errors"][0]["field"] if row["errors"] else None)
            for row in json.loads(answer.stdout)["rows"]] == [
        ("created", None), ("error", "row"), ("error", "status")]
    assert [person["email"] for person in stored(database_url)[:-2]] == ["a@venue.example"]


@pytest.mark.parametrize(
    ("content", "args", "code", "named"),
    [
        (None, [], 1, "cannot be read"),  # no such file
        ("DIRECTORY", [], 1, "cannot be read"),
        (b"\xff\xfe\x00bad", [], 1, "not UTF-8"),
        (b"name,city\r\nx,y\r\n", [], 1, "no 'email' column"),
        (b"", [], 1, "empty"),
        (b"email\r\na@b.example\r\n", ["--format", "xml"], 2, "--format"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole_and_stores_nothing(
    tmp_path: Path, data_dir: Path, env: dict[str, str], database_url: str,
    content: bytes | str | None, args: list[str], code: int, named: str,
) -> None:
    file = tmp_path / "venues.csv"
    if content == "DIRECTORY":
        file.mkdir()
    elif isinstance(content, bytes):
        file.write_bytes(content)
    answer = run(env, "contacts", "import", str(file), *args, "--data-dir", str(data_dir))
    assert answer.returncode == code, (answer.stdout, answer.stderr)
    assert named in answer.stderr
    if code == 1:
        assert answer.stderr.startswith(f"error: {file}: ")
    assert answer.stdout == ""
    assert stored(database_url) == [{"history": []}, {"audit": []}]


def test_a_terminal_gets_a_progress_bar(
    tmp_path: Path, data_dir: Path, env: dict[str, str], database_url: str
) -> None:
    file = tmp_path / "venues.csv"
    file.write_text("email\r\n" + "".join(f"venue{n}@example.org\r\n" for n in range(1200)))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*CLI, "contacts", "import", str(file), "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
        env={key: value for key, value in env.items() if key != "CI"},
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = io_select.select([controller], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(timeout=10) == 0, seen
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    text = seen.decode(errors="replace")
    assert "importing venues.csv" in text
    assert "1200" in text
    assert "venues.csv: 1200 created, 0 exists, 0 error" in text
