"""Leases that hold through slow and rate-limited relays, on SQLite and PostgreSQL.

A relay that answers DATA slowly, takes one connection and a couple of messages a second is how
outreach mail is sent. Each email must still go out exactly once: the lease is renewed while an
email waits for its connection and its rate token, and checked right before its transaction.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from email_sender.db.schema import attempts, emails
from email_sender.errors import StoreError
from email_sender.mail.lease import Lease
from email_sender.mail.message import EmailIn
from email_sender.mail.worker import DeliveryManager
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.smtp_server import SmtpTestServer

pytestmark = pytest.mark.slow


def slow_node(
    tmp_path: Path, database_url: str, server: SmtpTestServer, **sections: Any
) -> Service:
    """The relay of the reliability report: 1 connection, 2 messages/s, 3 s leases, 2 workers."""
    relay = RelaySettings(url=server.url, tls="none", max_connections=1, rate_per_second=2)
    values = {
        "smtp.relays": [relay],
        "delivery.lease_seconds": 3.0,
        "delivery.workers": 2,
        "delivery.batch_size": 20,
        "delivery.poll_interval": 0.05,
        **sections,
    }
    return build_service(make_settings(tmp_path, database_url, **values))


def email(n: int) -> dict[str, Any]:
    return {"from": "booking@example.com", "to": [f"venue{n}@example.org"],
            "subject": f"Proposal {n}", "text": f"Dear venue {n}, a date for our band?"}


def delivery(node: Service) -> DeliveryManager:
    manager = node.get("email_sender")
    assert isinstance(manager, DeliveryManager)
    return manager


async def count(node: Service, status: str) -> int:
    return (await node.outbox.counts_by_status()).get(status, 0)


def counted(node: Service, status: str, expected: int) -> Any:
    """A wait_for predicate: exactly ``expected`` emails are ``status``."""

    async def check() -> bool:
        return await count(node, status) == expected

    return check


async def test_slow_rate_limited_relay_gets_each_email_exactly_once(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    smtp_server.data_delay = 0.4
    total = 20
    async with slow_node(tmp_path, database_url, smtp_server) as node:
        async with asgi_client(node) as api:
            answer = await api.post(
                "/api/v1/emails/batch", json={"emails": [email(n) for n in range(total)]}
            )
            assert answer.json()["accepted"] == total
            ids = [item["message_id"] for item in answer.json()["items"]]
            # 2 messages a second: about 10 s of sending; the lease is 3 s.
            await wait_for(counted(node, "sent", total), timeout=60)
            # Anything re-sent after its lease ran out would arrive within another lease.
            await asyncio.sleep(3.5)
        counters = dict(delivery(node).counters)
    received = smtp_server.accepted_ids()
    assert sorted(received) == sorted(ids)
    assert set(received.values()) == {1}, "an email was sent twice"
    assert smtp_server.data_attempts == total
    assert counters["sent"] == total
    # Every claim ended in a send or was given up unsent (a long stall of this machine can
    # make the worker give an email back; it must never send it twice).
    assert counters["claimed"] == total + counters["released"] + counters["lease_lost"]


async def test_a_lease_that_cannot_be_renewed_stops_sends_before_it_runs_out(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer, monkeypatch: Any
) -> None:
    """Without renewal the batch outlives its lease; a second worker must find nothing to redo."""
    smtp_server.data_delay = 1.0
    # The relay's rate lets one worker claim 16 emails, which take a second each to send.
    relay = RelaySettings(url=smtp_server.url, tls="none", max_connections=1, rate_per_second=10)
    node = slow_node(tmp_path, database_url, smtp_server, **{"smtp.relays": [relay]})

    async def database_down(*args: Any, **kwargs: Any) -> set[str]:
        raise StoreError("database unreachable")

    renew = node.outbox.renew
    monkeypatch.setattr(node.outbox, "renew", database_down)
    async with node:
        accepted = await node.outbox.accept_many(
            [node.intake.prepare(EmailIn.model_validate(email(n))) for n in range(16)]
        )
        manager = delivery(node)
        manager.wake()
        await wait_for(lambda: manager.counters["released"] > 0, timeout=30)
        monkeypatch.setattr(node.outbox, "renew", renew)
        await wait_for(counted(node, "sent", 16), timeout=90)
        counters = dict(manager.counters)
    received = smtp_server.accepted_ids()
    assert sorted(received) == sorted(item.message_id for item in accepted)
    assert set(received.values()) == {1}, "a send started on a lease that had run out"
    # Emails given up unsent: released while still ours, or found taken by the other worker.
    assert counters["released"] + counters["lease_lost"] > 0


async def test_an_email_that_cannot_be_built_fails_with_its_reason(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    async with slow_node(tmp_path, database_url, smtp_server, **{
        "smtp.relays": [RelaySettings(url=smtp_server.url, tls="none")],
    }) as node:
        later = {**email(1), "send_at": "2999-01-01T00:00:00Z"}
        good = await node.intake.accept(EmailIn.model_validate(later))
        # A row stored before today's rules: its subject holds a line separator.
        async with node.db.transaction() as connection:
            await connection.execute(
                update(emails).where(emails.c.id == good.id)
                .values(subject="Proposal\u2028Bcc: everyone@example.org", status="queued",
                        next_attempt_at=time.time())
            )
        await wait_for(counted(node, "failed", 1), timeout=30)
        detail = await node.outbox.get(good.id)
    assert detail["status"] == "failed"
    assert "cannot be built" in detail["last_error"]
    assert [row["outcome"] for row in detail["attempts_log"]] == ["failed"]
    assert smtp_server.data_attempts == 0


async def test_stop_gives_back_what_waits_for_the_relay_promptly(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    relay = RelaySettings(url=smtp_server.url, tls="none", max_connections=1, rate_per_second=0.5)
    node = slow_node(tmp_path, database_url, smtp_server, **{
        "smtp.relays": [relay], "delivery.workers": 1, "delivery.lease_seconds": 60.0,
    })
    async with node:
        await node.outbox.accept_many(
            [node.intake.prepare(EmailIn.model_validate(email(n))) for n in range(10)]
        )
        delivery(node).wake()
        await wait_for(lambda: len(smtp_server.messages()) >= 1, timeout=30)
        await wait_for(counted(node, "sending", 9), timeout=10)
        started = time.monotonic()
    stopped_in = time.monotonic() - started
    # Eight emails wait about 16 s for their tokens; stopping does not wait for them.
    assert stopped_in < 5, stopped_in
    async with node.db.connect() as connection:
        rows = (await connection.execute(select(emails.c.status, emails.c.lease_owner))).all()
    assert {status for status, _ in rows} <= {"sent", "queued"}
    assert all(owner is None for _, owner in rows)
    assert len(smtp_server.messages()) == sum(1 for status, _ in rows if status == "sent")


async def test_a_sent_outcome_is_recorded_even_after_the_lease_moved(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    """The message went out: the worker now holding the email must learn it is done."""
    node = build_service(make_settings(tmp_path, database_url), role="api")
    async with node:
        accepted = await node.intake.accept(EmailIn.model_validate(email(1)))
        [row] = await node.outbox.claim("first", batch_size=1, lease_seconds=0.01)
        await asyncio.sleep(0.05)
        [again] = await node.outbox.claim("second", batch_size=1, lease_seconds=60)
        assert again.id == row.id
        attempt = {"relay": "r", "smtp_code": 250, "response": "ok", "outcome": "sent",
                   "started_at": time.time(), "duration_ms": 1.0}
        late_failure = {"email_id": row.id, "n": row.attempts, "status": "deferred",
                        "next_attempt_at": time.time(), "attempt": attempt}
        assert await node.outbox.record([late_failure], "first") == []
        sent = {**late_failure, "status": "sent", "sent_at": time.time()}
        assert await node.outbox.record([sent], "first") == [row.id]
        # The second worker's lease is gone with it: its renewal and its record are refused.
        assert await node.outbox.renew([row.id], "second", lease_until=time.time() + 60) == set()
        assert await node.outbox.record([{**sent, "n": again.attempts}], "second") == []
        assert await node.outbox.release([row.id], "second") == set()
        async with node.db.connect() as connection:
            logged = (await connection.execute(
                select(attempts.c.worker).where(attempts.c.email_id == accepted.id)
            )).scalars().all()
            status = (await connection.execute(
                select(emails.c.status).where(emails.c.id == accepted.id))).scalar_one()
    assert logged == ["first"]
    assert status == "sent"


async def test_outcomes_of_several_workers_share_one_record_each_under_its_own_lease(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    """One transaction records what each worker still holds, and only that (or what was sent)."""
    node = build_service(make_settings(tmp_path, database_url), role="api")
    async with node:
        for n in range(3):
            await node.intake.accept(EmailIn.model_validate(email(n)))
        [first] = await node.outbox.claim("first", batch_size=1, lease_seconds=60)
        [second] = await node.outbox.claim("second", batch_size=1, lease_seconds=60)
        [third] = await node.outbox.claim("third", batch_size=1, lease_seconds=60)
        attempt = {"relay": "r", "smtp_code": 250, "response": "ok", "outcome": "sent",
                   "started_at": time.time(), "duration_ms": 1.0}

        def outcome(row: Any, worker: str, status: str) -> dict[str, Any]:
            return {"email_id": row.id, "n": row.attempts, "worker": worker, "status": status,
                    "sent_at": time.time() if status == "sent" else None,
                    "next_attempt_at": time.time(), "attempt": attempt}

        recorded = await node.outbox.record([
            outcome(first, "first", "sent"),
            outcome(second, "second", "deferred"),
            # Not this worker's lease: refused, the email stays with "third".
            outcome(third, "first", "deferred"),
        ])
        assert sorted(recorded) == sorted([first.id, second.id])
        async with node.db.connect() as connection:
            rows = dict((await connection.execute(
                select(emails.c.id, emails.c.status).where(
                    emails.c.id.in_([first.id, second.id, third.id]))
            )).all())
            logged = dict((await connection.execute(
                select(attempts.c.email_id, attempts.c.worker)
            )).all())
    assert rows == {first.id: "sent", second.id: "deferred", third.id: "sending"}
    assert logged == {first.id: "first", second.id: "second"}


async def test_outcomes_that_arrive_while_sends_are_in_progress_share_one_transaction(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    """The recorder waits for the sends in progress (briefly) so their outcomes commit together."""
    node = build_service(make_settings(tmp_path, database_url), role="api")
    async with node:
        # Not started: its recorder is driven by hand below.
        manager = DeliveryManager(
            node.settings.delivery, outbox=node.outbox, suppressions=node.suppressions,
            bus=node.bus, modes=node.modes, transport_factory=lambda: None,  # type: ignore[arg-type,return-value]
        )
        for n in range(3):
            await node.intake.accept(EmailIn.model_validate(email(n)))
        batch = await node.outbox.claim("by-hand", batch_size=3, lease_seconds=60)
        lease = Lease(node.outbox, "by-hand", batch, 60)
        writes: list[int] = []
        record = node.outbox.record

        async def counted(outcomes: list[dict[str, Any]], worker: str | None = None) -> list[str]:
            writes.append(len(outcomes))
            return await record(outcomes, worker)

        node.outbox.record = counted  # type: ignore[method-assign]
        attempt = {"relay": "r", "smtp_code": 250, "response": "ok", "outcome": "sent",
                   "started_at": time.time(), "duration_ms": 1.0}
        recorder = manager._recorder
        manager.sending = len(batch)  # three sends still talking to the relay
        adds = [asyncio.create_task(recorder.add(row, lease, {
            "status": "sent", "sent_at": time.time(), "attempt": attempt})) for row in batch]
        await asyncio.sleep(0)
        manager.sending = 0  # their sends ended
        recorder.changed.set()
        await asyncio.gather(*adds)
        node.outbox.record = record  # type: ignore[method-assign]
        assert (await node.outbox.counts_by_status())["sent"] == 3
    assert writes == [3]
