"""The IMAP poller against a real dovecot and a real database (SQLite and PostgreSQL).

Messages are appended over IMAP as a mail server would deliver them; what the poller hands over
is collected by Message-ID, so order, loss and repetition show.
"""

from __future__ import annotations

import asyncio
import email
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from email_sender.db.engine import Database
from email_sender.db.schema import imap_state
from email_sender.errors import StoreError, ValidationError
from email_sender.inbound.imap import STOP_SECONDS, UID_BATCH, ImapPoller
from email_sender.inbound.receiver import Envelope
from email_sender.settings import InboundImapSettings
from tests.conftest import wait_for
from tests.support.dovecot import Mailbox, dovecot_or_skip
from tests.support.dovecot import dovecot as dovecot  # the fixtures
from tests.support.dovecot import dovecot_server as dovecot_server


def message(number: int, *, padding: int = 0) -> bytes:
    mail = EmailMessage()
    mail["From"] = "La Cigale <programmation@lacigale.example>"
    mail["To"] = "booking@tour.example"
    mail["Subject"] = f"Re: Proposition de concert n°{number}"
    mail["Message-ID"] = f"<reply-{number}@lacigale.example>"
    mail.set_content(f"Bonjour, réponse numéro {number}.\n" + "x" * padding)
    return bytes(mail)


def message_id(raw: bytes) -> str:
    return str(email.message_from_bytes(raw)["Message-ID"])


class Collector:
    """A deliver callable that keeps what it was given; it can refuse or fail on demand."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.envelopes: list[Envelope] = []
        self.refuse: set[str] = set()
        self.fail_on_call: int | None = None
        self.calls = 0

    async def __call__(self, raw: bytes, envelope: Envelope) -> object:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise StoreError("the database is busy")
        found = message_id(raw)
        if found in self.refuse:
            raise ValidationError("message", "not a message we take")
        self.ids.append(found)
        self.envelopes.append(envelope)
        return None


def imap_settings(server: Mailbox, **overrides: Any) -> InboundImapSettings:
    values: dict[str, Any] = {
        "url": server.url,
        "username": server.user,
        "password": server.password,
        "folders": ["INBOX"],
        "interval": 60.0,
        "timeout": 10.0,
        **overrides,
    }
    return InboundImapSettings(**values)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
async def pollers() -> AsyncIterator[list[ImapPoller]]:
    """Pollers made by a test; all are stopped after it."""
    made: list[ImapPoller] = []
    yield made
    for poller in made:
        await poller.stop()


def poller_for(
    pollers: list[ImapPoller], server: Mailbox, db: Database, deliver: Collector, **options: Any
) -> ImapPoller:
    extra = {name: options.pop(name) for name in ("max_message_bytes", "owner") if name in options}
    poller = ImapPoller(imap_settings(server, **options), db, deliver, **extra)
    pollers.append(poller)
    return poller


async def stored_last_uid(db: Database, folder: str = "INBOX") -> int | None:
    async with db.connect() as connection:
        rows = (await connection.execute(select(imap_state))).all()
    found = [row.last_uid for row in rows if row.mailbox.endswith(f"/{folder}")]
    return found[0] if found else None


async def test_fixture_serves_an_appended_message(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.append(message(1))
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector)

    assert await poller.poll_once() == 1
    assert collector.ids == ["<reply-1@lacigale.example>"]
    assert collector.envelopes == [Envelope(via="imap")]
    assert poller.info()["idle_supported"] is True


async def test_five_messages_in_order_then_none(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    for number in range(1, 6):
        dovecot.append(message(number))
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector)

    assert await poller.poll_once() == 5
    assert collector.ids == [f"<reply-{n}@lacigale.example>" for n in range(1, 6)]
    assert await poller.poll_once() == 0
    assert len(collector.ids) == 5
    assert await stored_last_uid(db) == 5
    info = poller.info()
    assert (info["fetched"], info["delivered"], info["refused"], info["errors"]) == (5, 5, 0, 0)
    assert info["url"] == dovecot.url and dovecot.password not in str(info)
    # Read-only: the owner still sees every message unread.
    client = dovecot.client()
    try:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["UNSEEN"]) == [1, 2, 3, 4, 5]
    finally:
        client.logout()


async def test_a_backlog_is_read_in_batches_in_order(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    count = 2 * UID_BATCH + 7
    dovecot.append_all([message(number) for number in range(1, count + 1)])
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector)

    assert await poller.poll_once() == count
    assert collector.ids == [f"<reply-{n}@lacigale.example>" for n in range(1, count + 1)]
    assert await stored_last_uid(db) == count


async def test_restart_mid_mailbox_reads_each_message_once(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    for number in range(1, 7):
        dovecot.append(message(number))
    failing = Collector()
    failing.fail_on_call = 3
    first = poller_for(pollers, dovecot, db, failing)

    with pytest.raises(StoreError):
        await first.poll_once()
    assert failing.ids == ["<reply-1@lacigale.example>", "<reply-2@lacigale.example>"]
    assert await stored_last_uid(db) == 2
    assert first.last_error == "the database is busy"
    await first.stop()

    second = Collector()
    assert await poller_for(pollers, dovecot, db, second).poll_once() == 4
    every = failing.ids + second.ids
    assert sorted(every) == sorted(f"<reply-{n}@lacigale.example>" for n in range(1, 7))
    assert second.ids == [f"<reply-{n}@lacigale.example>" for n in range(3, 7)]


async def test_a_refused_message_is_skipped_for_good(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    for number in range(1, 5):
        dovecot.append(message(number))
    collector = Collector()
    collector.refuse = {"<reply-2@lacigale.example>"}
    poller = poller_for(pollers, dovecot, db, collector)

    assert await poller.poll_once() == 3
    assert collector.ids == [f"<reply-{n}@lacigale.example>" for n in (1, 3, 4)]
    assert poller.info()["refused"] == 1
    collector.refuse = set()
    assert await poller.poll_once() == 0
    assert await stored_last_uid(db) == 4


async def test_a_message_over_the_size_limit_is_refused_unread(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.append(message(1))
    dovecot.append(message(2, padding=20_000))
    dovecot.append(message(3))
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, max_message_bytes=10_000)

    assert await poller.poll_once() == 2
    assert collector.ids == [f"<reply-{n}@lacigale.example>" for n in (1, 3)]
    info = poller.info()
    assert (info["fetched"], info["refused"]) == (2, 1)
    assert await stored_last_uid(db) == 3


async def test_a_recreated_folder_is_read_again(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.create_folder("Bookings")
    for number in range(1, 4):
        dovecot.append(message(number), folder="Bookings")
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, folders=["INBOX", "Bookings"])
    assert await poller.poll_once() == 3

    dovecot.delete_folder("Bookings")
    dovecot.create_folder("Bookings")
    for number in (11, 12):
        dovecot.append(message(number), folder="Bookings")

    # The new UIDs (1, 2) are below the old position (3): only the UIDVALIDITY tells.
    assert await poller.poll_once() == 2
    assert collector.ids[3:] == ["<reply-11@lacigale.example>", "<reply-12@lacigale.example>"]
    assert await stored_last_uid(db, "Bookings") == 2


async def test_two_folders_are_both_read(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.create_folder("Venues")
    dovecot.append(message(1))
    dovecot.append(message(2), folder="Venues")
    dovecot.append(message(3), folder="Venues")
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, folders=["INBOX", "Venues"])

    assert await poller.poll_once() == 3
    assert sorted(collector.ids) == [f"<reply-{n}@lacigale.example>" for n in (1, 2, 3)]
    assert await stored_last_uid(db, "INBOX") == 1
    assert await stored_last_uid(db, "Venues") == 2


async def test_idle_delivers_a_new_message_at_once(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.append(message(1))
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, interval=60.0)
    await poller.start()
    await wait_for(lambda: len(collector.ids) == 1, timeout=10)
    # Give the poller time to be in IDLE, then deliver as a mail server would.
    await asyncio.sleep(0.5)

    await asyncio.to_thread(dovecot.append, message(2))
    await wait_for(lambda: len(collector.ids) == 2, timeout=10)
    assert collector.ids[1] == "<reply-2@lacigale.example>"


async def test_a_dropped_connection_is_made_again(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.append(message(1))
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, interval=60.0)
    await poller.start()
    await wait_for(lambda: len(collector.ids) == 1, timeout=10)
    await asyncio.sleep(0.5)  # in IDLE

    await asyncio.to_thread(dovecot.kick)
    await asyncio.to_thread(dovecot.append, message(2))
    await wait_for(lambda: len(collector.ids) == 2, timeout=15)
    assert collector.ids == ["<reply-1@lacigale.example>", "<reply-2@lacigale.example>"]
    await wait_for(lambda: poller.last_error is None, timeout=5)
    assert poller.info()["connected"] is True


async def test_stop_returns_in_time_while_idling(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, interval=600.0)
    await poller.start()
    await wait_for(lambda: poller.info()["last_poll"] is not None, timeout=10)
    await asyncio.sleep(1.0)  # well inside IDLE by now

    started = time.monotonic()
    await poller.stop()
    assert time.monotonic() - started < STOP_SECONDS
    assert poller.info()["connected"] is False


async def test_bad_credentials_are_reported_without_a_crash(
    db: Database, pollers: list[ImapPoller]
) -> None:
    # A server of its own: dovecot slows every login from an address after failures.
    with dovecot_or_skip() as server:
        mailbox = server.add_user()
        collector = Collector()
        poller = poller_for(pollers, mailbox, db, collector, password="wrong")

        started = time.monotonic()
        await poller.start()
        assert time.monotonic() - started < 1.0
        await wait_for(lambda: poller.last_error is not None, timeout=10)
        assert poller.last_error is not None
        assert poller.last_error.startswith("authentication failed at " + mailbox.url)
        assert "wrong" not in str(poller.info())
        assert poller.info()["errors"] >= 1
        await poller.stop()


async def test_two_nodes_read_one_mailbox_one_at_a_time_and_the_second_takes_over(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    for number in range(1, 6):
        dovecot.append(message(number))
    first, second = Collector(), Collector()
    holder = poller_for(pollers, dovecot, db, first, interval=1.0, owner="node-a")
    await holder.start()
    await wait_for(lambda: len(first.ids) == 5, timeout=15)
    standby = poller_for(pollers, dovecot, db, second, interval=1.0, owner="node-b")
    await standby.start()
    await asyncio.to_thread(dovecot.append, message(6))
    await wait_for(lambda: len(first.ids) == 6, timeout=15)
    await asyncio.sleep(1.5)  # the standby node has looked at least once
    assert (holder.holds_mailbox, standby.holds_mailbox) == (True, False)
    assert second.ids == [] and standby.info()["connected"] is False

    await holder.stop()  # releases the mailbox
    await asyncio.to_thread(dovecot.append, message(7))
    await wait_for(lambda: len(second.ids) == 1, timeout=15)
    assert second.ids == ["<reply-7@lacigale.example>"]  # from where the first one stopped
    assert standby.holds_mailbox
    assert len(set(first.ids + second.ids)) == len(first.ids + second.ids) == 7


async def test_a_lease_left_by_a_crashed_node_runs_out_and_is_taken_over(
    dovecot: Mailbox, db: Database, pollers: list[ImapPoller]
) -> None:
    dovecot.append(message(1))
    collector = Collector()
    poller = poller_for(pollers, dovecot, db, collector, interval=1.0, owner="node-b")
    assert await poller.leases.hold(poller.lease_key, "crashed-node", seconds=2.0)
    await poller.start()
    await asyncio.sleep(1.2)
    assert collector.ids == [] and not poller.holds_mailbox
    await wait_for(lambda: collector.ids == ["<reply-1@lacigale.example>"], timeout=15)
    assert poller.holds_mailbox
    assert not await poller.leases.hold(poller.lease_key, "crashed-node", seconds=2.0)
