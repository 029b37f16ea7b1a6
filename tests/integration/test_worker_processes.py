"""Worker processes sharing one PostgreSQL outbox: no duplicates, and a SIGKILL loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from email_sender.db.engine import Database
from email_sender.db.schema import attempts, emails
from email_sender.mail.message import EmailIn
from email_sender.mail.outbox import Outbox
from email_sender.service import build_service
from tests.conftest import make_settings, wait_for
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def start_worker(tmp_path: Path, name: str, pg_url: str, smtp: SmtpTestServer,
                 **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "EMAIL_SENDER__DATABASE__URL": pg_url,
        "EMAIL_SENDER__SMTP__RELAYS": json.dumps([{"url": smtp.url, "tls": "none",
                                                   "max_connections": 4}]),
        "EMAIL_SENDER__DELIVERY__POLL_INTERVAL": "0.05",
        "EMAIL_SENDER__METRICS__PORT": "0",
        "EMAIL_SENDER__LOGGING__LEVEL": "WARNING",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "email_sender", "serve", "--role", "delivery",
         "--data-dir", str(tmp_path / name)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


async def fill(pg_url: str, tmp_path: Path, count: int) -> list[str]:
    settings = make_settings(tmp_path / "filler", pg_url)
    node = build_service(settings, role="api")
    await node.db.start()
    try:
        outbox: Outbox = node.outbox
        prepared = [
            node.intake.prepare(EmailIn.model_validate({
                "from": "ops@example.com", "to": [f"user{n}@example.org"],
                "subject": f"Notice {n}", "text": "Body",
            }))
            for n in range(count)
        ]
        accepted = await outbox.accept_many(prepared)
        return [item.message_id for item in accepted]
    finally:
        await node.db.stop()


async def count_status(pg_url: str, status: str) -> int:
    database = Database(pg_url, migrate=False)
    try:
        async with database.connect() as connection:
            value: int = (await connection.execute(
                select(func.count()).select_from(emails).where(emails.c.status == status)
            )).scalar()
            return value
    finally:
        await database.stop()


async def workers_that_sent(pg_url: str) -> set[str]:
    database = Database(pg_url, migrate=False)
    try:
        async with database.connect() as connection:
            rows = await connection.execute(select(attempts.c.worker).distinct())
            return {row.worker.rsplit("-w", 1)[0] for row in rows}
    finally:
        await database.stop()


async def leases_held(pg_url: str) -> dict[str, float]:
    """Emails being sent, with the time their lease runs out."""
    database = Database(pg_url, migrate=False)
    try:
        async with database.connect() as connection:
            rows = await connection.execute(
                select(emails.c.id, emails.c.lease_until).where(emails.c.status == "sending")
            )
            return {row.id: row.lease_until for row in rows}
    finally:
        await database.stop()


async def attempt_starts(pg_url: str, email_ids: list[str]) -> dict[str, float]:
    """The earliest recorded attempt start of each of these emails."""
    database = Database(pg_url, migrate=False)
    try:
        async with database.connect() as connection:
            rows = await connection.execute(
                select(attempts.c.email_id, func.min(attempts.c.started_at))
                .where(attempts.c.email_id.in_(email_ids)).group_by(attempts.c.email_id)
            )
            return {email_id: started for email_id, started in rows}
    finally:
        await database.stop()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_two_worker_processes_never_send_one_email_twice(
    tmp_path: Path, pg_url: str, smtp_server: SmtpTestServer
) -> None:
    message_ids = await fill(pg_url, tmp_path, 2000)
    processes = [start_worker(tmp_path, f"w{n}", pg_url, smtp_server) for n in range(2)]
    try:
        await wait_for(lambda: len(smtp_server.messages()) >= 2000, timeout=120)
        await wait_for(lambda: _equals(count_status(pg_url, "sent"), 2000), timeout=30)
    finally:
        for process in processes:
            stop(process)
    received = smtp_server.accepted_ids()
    assert sorted(received) == sorted(message_ids)
    assert max(received.values()) == 1
    # Both processes did part of the work.
    assert len(await workers_that_sent(pg_url)) == 2


async def _equals(value: Any, expected: int) -> bool:
    return await value == expected


async def test_a_killed_worker_loses_nothing_and_duplicates_only_what_it_had_in_flight(
    tmp_path: Path, pg_url: str, smtp_server: SmtpTestServer
) -> None:
    total = 3000
    await fill(pg_url, tmp_path, total)
    victim = start_worker(tmp_path, "victim", pg_url, smtp_server,
                          EMAIL_SENDER__DELIVERY__LEASE_SECONDS="3")
    try:
        await wait_for(lambda: len(smtp_server.messages()) >= 300, timeout=120)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
    # What the dead worker held: leased emails whose outcome it never recorded.
    held = await leases_held(pg_url)
    in_flight = len(held)
    assert in_flight > 0, "the killed worker held no lease; nothing was tested"
    sent_before = await count_status(pg_url, "sent")
    assert sent_before < total, "the kill came after the work was done; nothing was tested"
    rescuer = start_worker(tmp_path, "rescuer", pg_url, smtp_server,
                           EMAIL_SENDER__DELIVERY__LEASE_SECONDS="3")
    try:
        await wait_for(lambda: _equals(count_status(pg_url, "sent"), total), timeout=180)
    finally:
        stop(rescuer)
    # Reclaimed after the lease ran out, not before: every attempt on an email the dead worker
    # held started once its lease was over.
    retried = await attempt_starts(pg_url, list(held))
    assert set(retried) == set(held)
    early = {email_id: (retried[email_id], held[email_id]) for email_id in held
             if retried[email_id] < held[email_id]}
    assert early == {}, early
    received = smtp_server.accepted_ids()
    assert len(received) == total, "an acknowledged email was lost"
    duplicates = sum(count - 1 for count in received.values())
    # The bound: only emails leased to the killed worker at the kill can go twice.
    assert duplicates <= in_flight, (duplicates, in_flight)
