"""The inbound SMTP listener as a running server: real clients (aiosmtplib, raw sockets) talk to
it, and what it hands to ``deliver`` is checked byte for byte."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from email_sender.errors import PortInUse, StoreError, ValidationError
from email_sender.inbound.listener import InboundListener
from email_sender.inbound.receiver import Envelope
from email_sender.managers import State
from email_sender.settings import InboundSmtpSettings
from tests.conftest import wait_for

# Every wait in these tests is bounded by this.
WAIT = 10.0
LIMIT = 2048

RAW = (
    b"From: Someone <someone@remote.test>\r\n"
    b"To: bounces+abc123@example.org\r\n"
    b"Subject: Re: your offer\r\n"
    b"Message-ID: <reply-1@remote.test>\r\n"
    b"\r\n"
    b"Yes, interested.\r\n"
    b"..a line that began with a dot\r\n"
)


def message_of(size: int) -> bytes:
    """RAW padded with short lines to exactly ``size`` bytes."""
    message = RAW
    while size - len(message) > 72 + 1:
        message += b"x" * 70 + b"\r\n"
    message += b"y" * (size - len(message) - 2) + b"\r\n"
    assert len(message) == size
    return message


class Store:
    """The other side of ``deliver``: keeps what arrives, or fails as a test asks it to."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, Envelope]] = []
        self.failure: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.cancelled = 0

    async def deliver(self, raw: bytes, envelope: Envelope) -> object:
        self.entered.set()
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        self.messages.append((raw, envelope))
        return "stored"


def settings(domains: list[str], port: int = 0) -> InboundSmtpSettings:
    return InboundSmtpSettings(
        enabled=True, host="127.0.0.1", port=port, domains=domains, max_message_bytes=LIMIT
    )


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def listener(store: Store) -> AsyncIterator[InboundListener]:
    server = InboundListener(
        settings(["Example.ORG", "owner@partner.test"]),
        store.deliver,
        drain_seconds=0.5,
        max_recipients=3,
    )
    await asyncio.wait_for(server.start(), WAIT)
    yield server
    await asyncio.wait_for(server.stop(), WAIT)


def client(listener: InboundListener) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False, timeout=WAIT)


async def test_a_message_to_our_domain_is_delivered_once_with_its_bytes_and_envelope(
    listener: InboundListener, store: Store
) -> None:
    assert listener.port != 0
    async with client(listener) as smtp:
        await smtp.ehlo()
        assert smtp.esmtp_extensions["size"] == str(LIMIT)
        assert "smtputf8" in smtp.esmtp_extensions
        assert "8bitmime" in smtp.esmtp_extensions
        refused, reply = await smtp.sendmail(
            "someone@remote.test",
            ["bounces+abc123@example.org", "sales@EXAMPLE.org", "owner@Partner.test"],
            RAW,
        )
    assert refused == {}
    assert reply.startswith("2.0.0")
    assert store.messages == [
        (
            RAW,
            Envelope(
                via="smtp",
                mail_from="someone@remote.test",
                rcpt_to=("bounces+abc123@example.org", "sales@EXAMPLE.org", "owner@Partner.test"),
            ),
        )
    ]
    assert listener.info()["accepted"] == 1


async def test_another_domain_is_refused_as_relaying(
    listener: InboundListener, store: Store
) -> None:
    async with client(listener) as smtp:
        await smtp.mail("someone@remote.test")
        for outsider in ("victim@elsewhere.test", "other@partner.test", "example.org"):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await smtp.rcpt(outsider)
            assert refused.value.code == 550
            assert refused.value.message.startswith("5.7.1 relaying denied")
        await smtp.rset()
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await smtp.sendmail("someone@remote.test", ["victim@elsewhere.test"], RAW)
    assert store.messages == []
    assert listener.info()["refused_relay"] == 4


async def test_mixed_recipients_keep_the_good_one_only(
    listener: InboundListener, store: Store
) -> None:
    async with client(listener) as smtp:
        refused, _ = await smtp.sendmail(
            "someone@remote.test", ["victim@elsewhere.test", "team@example.org"], RAW
        )
    assert set(refused) == {"victim@elsewhere.test"}
    assert refused["victim@elsewhere.test"].code == 550
    [(_, envelope)] = store.messages
    assert envelope.rcpt_to == ("team@example.org",)


async def test_too_many_recipients_get_452_and_the_message_goes_to_the_first_ones(
    listener: InboundListener, store: Store
) -> None:
    recipients = [f"r{n}@example.org" for n in range(5)]
    async with client(listener) as smtp:
        refused, _ = await smtp.sendmail("someone@remote.test", recipients, RAW)
    assert {address: response.code for address, response in refused.items()} == {
        "r3@example.org": 452,
        "r4@example.org": 452,
    }
    assert refused["r3@example.org"].message.startswith("4.5.3")
    [(_, envelope)] = store.messages
    assert envelope.rcpt_to == ("r0@example.org", "r1@example.org", "r2@example.org")


async def test_a_message_over_the_limit_is_refused_with_552(
    listener: InboundListener, store: Store
) -> None:
    too_big = message_of(LIMIT + 1)
    async with client(listener) as smtp:
        # aiosmtplib announces the size (SIZE=): refused before any byte of the message is sent.
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as announced:
            await smtp.sendmail("someone@remote.test", ["team@example.org"], too_big)
        assert announced.value.code == 552
        # Unannounced, it is refused once the data passes the limit.
        await smtp.mail("someone@remote.test")
        await smtp.rcpt("team@example.org")
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.data(too_big)
        assert refused.value.code == 552
        # A message at the limit still goes through. aiosmtpd counts the bytes on the wire,
        # where RAW's line that begins with a dot carries one more (RFC 5321 4.5.2).
        at_limit = message_of(LIMIT - 1)
        await smtp.sendmail("someone@remote.test", ["team@example.org"], at_limit)
    assert [raw for raw, _ in store.messages] == [at_limit]
    assert listener.info()["refused_size"] == 2


async def test_the_null_sender_of_a_bounce_is_accepted(
    listener: InboundListener, store: Store
) -> None:
    async with client(listener) as smtp:
        await smtp.sendmail("", ["bounces+abc123@example.org"], RAW)
    [(_, envelope)] = store.messages
    assert envelope.mail_from == ""
    assert envelope.rcpt_to == ("bounces+abc123@example.org",)


async def test_eight_bit_headers_and_utf8_addresses_arrive_unchanged(
    listener: InboundListener, store: Store
) -> None:
    latin1 = (
        b"From: someone@remote.test\r\n"
        b"Subject: Caf\xe9 cr\xe8me\r\n"
        b"\r\n"
        b"R\xe9ponse en latin-1, sans d\xe9claration.\r\n"
    )
    utf8 = "Subject: Grüße\r\n\r\nHallo\r\n".encode()
    async with client(listener) as smtp:
        await smtp.sendmail("someone@remote.test", ["team@example.org"], latin1)
        await smtp.sendmail(
            "jöhn@exämple.test", ["ünï@example.org"], utf8, mail_options=["SMTPUTF8"]
        )
    assert store.messages == [
        (latin1, Envelope("smtp", "someone@remote.test", ("team@example.org",))),
        (utf8, Envelope("smtp", "jöhn@exämple.test", ("ünï@example.org",))),
    ]


async def test_a_refusal_for_good_is_a_554_with_the_reason(
    listener: InboundListener, store: Store
) -> None:
    store.failure = ValidationError("message", "not an RFC 5322 message\r\n250 OK")
    async with client(listener) as smtp:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
    assert refused.value.code == 554
    # The reason stays one line: it cannot be read as a second reply.
    assert refused.value.message == "5.6.0 not an RFC 5322 message 250 OK"
    assert store.messages == []
    assert listener.info()["refused_other"] == 1


async def test_a_store_failure_is_a_451(listener: InboundListener, store: Store) -> None:
    store.failure = StoreError("database is locked")
    async with client(listener) as smtp:
        with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
            await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
    assert deferred.value.code == 451
    assert deferred.value.message.startswith("4.3.0")
    assert listener.info()["temp_failed"] == 1


async def test_a_crash_in_deliver_is_a_451_and_the_next_message_is_served(
    listener: InboundListener, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.failure = RuntimeError("a bug")
    caplog.set_level(logging.ERROR, logger="email_sender.inbound.listener")
    async with client(listener) as smtp:
        with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
            await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
        assert deferred.value.code == 451
        await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
    [crash] = [r for r in caplog.records if r.message == "inbound_smtp_deliver_crashed"]
    assert crash.exc_info is not None and isinstance(crash.exc_info[1], RuntimeError)
    assert len(store.messages) == 1
    assert listener.info()["temp_failed"] == 1
    assert listener.info()["accepted"] == 1


async def test_no_domains_refuses_everything_and_says_so(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="email_sender.inbound.listener")
    listener = InboundListener(settings([]), store.deliver)
    await asyncio.wait_for(listener.start(), WAIT)
    try:
        assert "inbound_smtp_no_domains" in [r.message for r in caplog.records]
        assert "every recipient is refused" in (await listener.health()).detail
        async with client(listener) as smtp:
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
    finally:
        await asyncio.wait_for(listener.stop(), WAIT)
    assert store.messages == []


async def test_a_taken_port_fails_reserve_with_a_clear_error(store: Store) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        listener = InboundListener(settings(["example.org"], port=taken), store.deliver)
        with pytest.raises(PortInUse) as error:
            listener.reserve()
        assert f"inbound SMTP port {taken} on 127.0.0.1 is already in use" in str(error.value)
        with pytest.raises(PortInUse):
            await listener.start()
        health = await listener.health()
        assert health.state == State.STOPPED
        assert health.last_error is not None and str(taken) in health.last_error
    finally:
        holder.close()


async def test_reserve_holds_the_port_that_start_then_serves(store: Store) -> None:
    listener = InboundListener(settings(["example.org"]), store.deliver)
    listener.reserve()
    reserved = listener.port
    assert reserved != 0
    assert (await listener.health()).state == State.STOPPED
    await asyncio.wait_for(listener.start(), WAIT)
    try:
        assert listener.port == reserved
        health = await listener.health()
        assert health.state == State.RUNNING
        assert health.detail == f"listening on 127.0.0.1:{reserved}"
    finally:
        await asyncio.wait_for(listener.stop(), WAIT)
    assert (await listener.health()).state == State.STOPPED
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", reserved), WAIT)


async def test_stop_lets_a_message_being_stored_finish_with_its_250(store: Store) -> None:
    listener = InboundListener(settings(["example.org"]), store.deliver, drain_seconds=WAIT)
    await asyncio.wait_for(listener.start(), WAIT)
    store.gate = asyncio.Event()

    async def send() -> str:
        async with client(listener) as smtp:
            _, reply = await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
            return reply

    sending = asyncio.create_task(send())
    await asyncio.wait_for(store.entered.wait(), WAIT)
    stopping = asyncio.create_task(listener.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # it waits for the message being stored
    store.gate.set()
    await asyncio.wait_for(stopping, WAIT)
    assert (await asyncio.wait_for(sending, WAIT)).startswith("2.0.0")
    assert len(store.messages) == 1
    assert listener.info()["accepted"] == 1


async def test_stop_is_bounded_and_answers_421_to_what_it_cuts_off(store: Store) -> None:
    listener = InboundListener(settings(["example.org"]), store.deliver, drain_seconds=0.3)
    await asyncio.wait_for(listener.start(), WAIT)
    store.gate = asyncio.Event()  # never set: the store hangs
    idle_reader, idle_writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", listener.port), WAIT
    )
    assert (await asyncio.wait_for(idle_reader.readline(), WAIT)).startswith(b"220 ")

    async def send() -> None:
        async with client(listener) as smtp:
            await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)

    sending = asyncio.create_task(send())
    await asyncio.wait_for(store.entered.wait(), WAIT)
    started = time.monotonic()
    await asyncio.wait_for(listener.stop(), WAIT)
    assert time.monotonic() - started < 0.3 + 2.5
    with pytest.raises((aiosmtplib.SMTPDataError, aiosmtplib.SMTPServerDisconnected)) as cut:
        await asyncio.wait_for(sending, WAIT)
    if isinstance(cut.value, aiosmtplib.SMTPDataError):
        assert cut.value.code == 421
    assert store.cancelled == 1
    assert store.messages == []
    assert (await asyncio.wait_for(idle_reader.readline(), WAIT)).startswith(b"421 4.3.2")
    assert await asyncio.wait_for(idle_reader.read(), WAIT) == b""
    idle_writer.close()


async def test_an_idle_client_is_dropped_after_the_timeout(store: Store) -> None:
    listener = InboundListener(settings(["example.org"]), store.deliver, timeout=0.3)
    await asyncio.wait_for(listener.start(), WAIT)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", listener.port), WAIT
        )
        assert (await asyncio.wait_for(reader.readline(), WAIT)).startswith(b"220 example.org")
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
    finally:
        await asyncio.wait_for(listener.stop(), WAIT)


async def test_a_restarted_listener_serves_again_and_keeps_its_counters(store: Store) -> None:
    listener = InboundListener(settings(["example.org"]), store.deliver)
    for _ in range(2):
        await asyncio.wait_for(listener.start(), WAIT)
        try:
            async with client(listener) as smtp:
                await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
        finally:
            await asyncio.wait_for(listener.stop(), WAIT)
    assert len(store.messages) == 2
    assert listener.info()["accepted"] == 2


async def test_connections_past_the_limit_are_answered_421_and_the_rest_served(
    store: Store,
) -> None:
    listener = InboundListener(settings(["example.org"]), store.deliver, max_sessions=2)
    await asyncio.wait_for(listener.start(), WAIT)
    held = []
    try:
        for _ in range(2):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", listener.port), WAIT
            )
            assert (await asyncio.wait_for(reader.readline(), WAIT)).startswith(b"220 ")
            held.append(writer)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", listener.port), WAIT
        )
        refusal = await asyncio.wait_for(reader.read(), WAIT)
        assert refusal == b"421 4.7.0 too many connections, try again later\r\n"
        writer.close()
        assert listener.info()["refused_busy"] == 1
        held.pop().close()  # a slot frees up: the next sender is served

        async def served() -> bool:
            try:
                async with client(listener) as smtp:
                    await smtp.sendmail("someone@remote.test", ["team@example.org"], RAW)
            except aiosmtplib.SMTPException:
                return False
            return True

        await wait_for(served, timeout=WAIT)
        assert len(store.messages) == 1
    finally:
        for writer in held:
            writer.close()
        await asyncio.wait_for(listener.stop(), WAIT)
