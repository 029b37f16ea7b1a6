"""The capture sink as a running SMTP server: what real clients send to it lands in messages()."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
import pytest

from email_sender.errors import PortInUse
from email_sender.mail.message import EmailIn, build_mime, prepare_email
from email_sender.mail.sink import CaptureSink
from email_sender.mail.transport import SmtpTransport
from email_sender.managers import Manager, State
from email_sender.settings import CaptureSinkSettings, MailSettings, RelaySettings


@pytest.fixture
async def sink() -> AsyncIterator[CaptureSink]:
    capture = CaptureSink(CaptureSinkSettings(host="127.0.0.1", port=0, max_messages=3))
    await capture.start()
    yield capture
    await capture.stop()


def message(subject: str, message_id: str) -> EmailMessage:
    built = EmailMessage()
    built["From"] = "app@example.com"
    built["To"] = "user@example.com"
    built["Subject"] = subject
    built["Message-ID"] = message_id
    built.set_content("hello")
    return built


async def test_a_real_send_lands_in_messages(sink: CaptureSink) -> None:
    assert sink.port != 0
    await aiosmtplib.send(message("Welcome", "<m1@example.com>"), hostname="127.0.0.1",
                          port=sink.port, start_tls=False)
    [captured] = sink.messages()
    assert captured["message_id"] == "<m1@example.com>"
    assert captured["from"] == "app@example.com"
    assert captured["to"] == ["user@example.com"]
    assert captured["subject"] == "Welcome"
    received_at = datetime.fromisoformat(captured["received_at"])
    assert received_at.utcoffset() == timedelta(0)
    assert b"hello" in (sink.raw("<m1@example.com>") or b"")
    assert sink.count == 1


async def test_transport_to_the_sink_with_international_addresses(sink: CaptureSink) -> None:
    data = EmailIn.model_validate({"from": "Jöhn <jöhn@exämple.org>", "to": ["ünï@exämple.org"],
                                   "subject": "Grüße", "text": "Hallo"})
    email = prepare_email(data, MailSettings())
    transport = SmtpTransport([RelaySettings(url=f"smtp://127.0.0.1:{sink.port}", timeout=5)])
    try:
        result = await transport.send(build_mime(email), email.sender, email.recipients)
    finally:
        await transport.close()
    assert result.code == 250
    [captured] = sink.messages()
    assert captured["message_id"] == email.message_id
    assert captured["to"] == ["ünï@exämple.org"]
    assert captured["subject"] == "Grüße"


async def test_bounded_newest_first_paging_and_clear(sink: CaptureSink) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as client:
        for n in range(5):
            await client.send_message(message(f"n{n}", f"<n{n}@example.com>"))
    assert [item["subject"] for item in sink.messages()] == ["n4", "n3", "n2"]
    assert [item["subject"] for item in sink.messages(limit=1, offset=1)] == ["n3"]
    assert sink.raw("<n0@example.com>") is None
    assert sink.info()["received_total"] == 5
    assert sink.clear() == 3
    assert sink.messages() == []


async def test_manager_contract_and_health(sink: CaptureSink) -> None:
    assert isinstance(sink, Manager)
    assert (sink.name, sink.depends_on) == ("smtp_sink", ())
    assert (await sink.health()).state is State.RUNNING
    info = sink.info()
    assert (info["port"], info["count"], info["backend"]) == (sink.port, 0, "aiosmtpd")
    await sink.stop()
    assert (await sink.health()).state is State.STOPPED
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.send(message("late", "<late@example.com>"), hostname="127.0.0.1",
                              port=info["port"], start_tls=False, timeout=2)


async def test_a_taken_port_is_port_in_use() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        capture = CaptureSink(CaptureSinkSettings(host="127.0.0.1", port=port))
        with pytest.raises(PortInUse):
            await capture.start()
    assert (await capture.health()).state is State.STOPPED


def sized(subject: str, message_id: str, body_bytes: int) -> EmailMessage:
    built = message(subject, message_id)
    built.set_content("x" * body_bytes)
    return built


async def test_a_message_over_the_size_limit_is_552_and_not_kept() -> None:
    settings = CaptureSinkSettings(host="127.0.0.1", port=0, max_message_bytes=4096)
    capture = CaptureSink(settings)
    await capture.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=capture.port, start_tls=False,
                                   timeout=10) as client:
            with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                await client.send_message(sized("big", "<big@example.com>", 64 * 1024))
            assert refused.value.code == 552
            # The session goes on: a message under the limit still lands.
            await client.send_message(sized("small", "<small@example.com>", 1024))
    finally:
        await capture.stop()
    assert [item["subject"] for item in capture.messages()] == ["small"]
    assert capture.raw("<big@example.com>") is None


async def test_stored_bytes_are_capped_oldest_dropped_first() -> None:
    settings = CaptureSinkSettings(host="127.0.0.1", port=0, max_message_bytes=8192,
                                   max_stored_bytes=12 * 1024)
    capture = CaptureSink(settings)
    await capture.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=capture.port, start_tls=False,
                                   timeout=10) as client:
            for n in range(5):
                await client.send_message(sized(f"s{n}", f"<s{n}@example.com>", 5000))
    finally:
        await capture.stop()
    info = capture.info()
    assert [item["subject"] for item in capture.messages()] == ["s4", "s3"]
    assert info["received_total"] == 5
    assert 0 < info["stored_bytes"] <= 12 * 1024
    assert capture.clear() == 2 and capture.info()["stored_bytes"] == 0
