"""SmtpTransport against a real SMTP server (tests/support/smtp_server.py)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from email_sender.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from email_sender.mail.message import EmailIn, PreparedEmail, build_mime, prepare_email
from email_sender.mail.ratelimit import LocalTokenBucket
from email_sender.mail.transport import SmtpTransport
from email_sender.settings import MailSettings, RelaySettings
from tests.support.smtp_server import SmtpTestServer

ServerFactory = Callable[..., SmtpTestServer]


def prepared(to: list[str] | None = None, sender: str = "sender@example.com") -> PreparedEmail:
    data = EmailIn.model_validate(
        {"from": sender, "to": to or ["alice@example.com"], "subject": "Hi", "text": "Hello"}
    )
    return prepare_email(data, MailSettings())


async def send(transport: SmtpTransport, email: PreparedEmail | None = None) -> Any:
    email = email or prepared()
    return await transport.send(build_mime(email), email.sender, email.recipients)


def relay(server: SmtpTestServer, **options: Any) -> RelaySettings:
    return RelaySettings(url=server.url, timeout=5, **options)


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def transport(smtp_server: SmtpTestServer) -> AsyncIterator[SmtpTransport]:
    smtp = SmtpTransport([relay(smtp_server, max_connections=2)], helo_name="client.test")
    yield smtp
    await smtp.close()


# --- answers ---------------------------------------------------------------------------------


async def test_accepted_message_gives_a_send_result(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    email = prepared(to=["alice@example.com", "bob@example.com"])
    result = await send(transport, email)
    assert (result.relay, result.code) == (smtp_server.relay_name, 250)
    assert "queued" in result.response
    assert result.duration_ms >= 0
    [received] = smtp_server.messages()
    assert received.message_id == email.message_id
    assert received.rcpt_tos == ["alice@example.com", "bob@example.com"]
    assert received.mail_from == "sender@example.com"


@pytest.mark.parametrize("mode", ["451", "421"])
async def test_4xx_is_transient_with_its_code(
    smtp_server: SmtpTestServer, transport: SmtpTransport, mode: str
) -> None:
    smtp_server.mode = mode
    with pytest.raises(TransientDeliveryError) as caught:
        await send(transport)
    assert caught.value.smtp_code == int(mode)
    assert caught.value.relay == smtp_server.relay_name
    assert caught.value.details["network"] is False
    assert smtp_server.messages() == []


async def test_550_is_permanent_with_code_and_text(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    smtp_server.mode = "550"
    with pytest.raises(PermanentDeliveryError) as caught:
        await send(transport)
    assert caught.value.smtp_code == 550
    assert "Mailbox unavailable" in caught.value.details["response"]


async def test_dropped_connection_is_transient(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    smtp_server.mode = "drop"
    with pytest.raises(TransientDeliveryError) as caught:
        await send(transport)
    assert caught.value.smtp_code is None
    assert caught.value.details["network"] is True
    smtp_server.mode = "250"
    assert (await send(transport)).code == 250


async def test_scripted_retry_delivers_exactly_once(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    email = prepared()
    smtp_server.script(email.message_id, [451, "drop", 250])
    for _ in range(2):
        with pytest.raises(TransientDeliveryError):
            await send(transport, email)
    await send(transport, email)
    assert smtp_server.attempts_by_id[email.message_id] == 3
    assert smtp_server.accepted_ids() == {email.message_id: 1}


async def test_one_refused_recipient_fails_the_whole_message(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    smtp_server.refuse_recipients.add("gone@example.com")
    with pytest.raises(PermanentDeliveryError) as caught:
        await send(transport, prepared(to=["alice@example.com", "gone@example.com"]))
    assert caught.value.smtp_code == 550
    assert smtp_server.data_attempts == 0
    # The envelope was reset, so the same connection carries the next message.
    assert (await send(transport)).code == 250
    assert smtp_server.connections == 1


# --- connections -----------------------------------------------------------------------------


async def test_connections_are_reused_and_bounded(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    emails = [prepared(to=[f"user{n}@example.com"]) for n in range(20)]
    results = await asyncio.gather(*(send(transport, email) for email in emails))
    assert {result.code for result in results} == {250}
    assert 1 <= smtp_server.connections <= 2
    assert smtp_server.accepted_ids() == {email.message_id: 1 for email in emails}
    for email in emails[:5]:
        await send(transport, email)
    assert smtp_server.connections <= 2
    [stats] = transport.stats()
    assert stats["opened_total"] == smtp_server.connections


async def test_a_connection_closed_by_the_server_is_replaced(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    await send(transport)
    smtp_server.disconnect_all()
    email = prepared()
    assert (await send(transport, email)).code == 250
    assert smtp_server.accepted_count(email.message_id) == 1
    assert smtp_server.connections == 2


async def test_idle_connections_are_checked_with_noop(smtp_server: SmtpTestServer) -> None:
    transport = SmtpTransport([relay(smtp_server)], noop_after=0.0)
    try:
        await send(transport)
        await send(transport)
        assert smtp_server.connections == 1
    finally:
        await transport.close()
    assert transport.stats()[0]["open"] == 0


async def test_close_closes_pooled_connections(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    await asyncio.gather(send(transport), send(transport))
    await transport.close()
    stats = transport.stats()[0]
    assert stats.pop("transaction_ms") > 0
    assert stats == {
        "relay": smtp_server.relay_name, "open": 0, "idle": 0,
        "opened_total": smtp_server.connections, "max_connections": 2,
    }


# --- failover --------------------------------------------------------------------------------


async def test_failover_from_a_dead_port(smtp_server: SmtpTestServer) -> None:
    dead = RelaySettings(url=f"smtp://127.0.0.1:{dead_port()}", timeout=5)
    transport = SmtpTransport([dead, relay(smtp_server)])
    try:
        result = await send(transport)
    finally:
        await transport.close()
    assert result.relay == smtp_server.relay_name
    assert len(smtp_server.messages()) == 1


async def test_failover_from_a_relay_answering_421_at_connect(
    smtp_server_factory: ServerFactory,
) -> None:
    busy, live = smtp_server_factory(), smtp_server_factory()
    busy.greeting_code = 421
    transport = SmtpTransport([relay(busy), relay(live)])
    try:
        result = await send(transport)
    finally:
        await transport.close()
    assert result.relay == live.relay_name
    assert busy.connections == 1
    assert busy.messages() == []


async def test_every_relay_down_is_transient() -> None:
    transport = SmtpTransport([
        RelaySettings(url=f"smtp://127.0.0.1:{dead_port()}", timeout=5),
        RelaySettings(url=f"smtp://127.0.0.1:{dead_port()}", timeout=5),
    ])
    with pytest.raises(TransientDeliveryError) as caught:
        await send(transport)
    assert "no relay reachable" in caught.value.message
    assert caught.value.details["network"] is True
    await transport.close()


async def test_check_reaches_a_relay(smtp_server: SmtpTestServer, transport: SmtpTransport) -> None:
    assert await transport.check() == smtp_server.relay_name


# --- auth, TLS, SMTPUTF8 ---------------------------------------------------------------------


async def test_auth_with_credentials(smtp_server_factory: ServerFactory) -> None:
    server = smtp_server_factory(auth=("mailer", "s3cret"))
    good = SmtpTransport([relay(server, username="mailer", password="s3cret", tls="none")])
    bad = SmtpTransport([relay(server, username="mailer", password="wrong", tls="none")])
    try:
        assert (await send(good)).code == 250
        with pytest.raises(TransientDeliveryError) as caught:
            await send(bad)
    finally:
        await good.close()
        await bad.close()
    assert "535" in caught.value.message
    outcomes = [ok for _, ok in server.auth_attempts]
    # The client tries each mechanism the server offers before giving up.
    assert outcomes[0] is True
    assert outcomes[1:] and not any(outcomes[1:])
    assert len(server.messages()) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(
    smtp_server_factory: ServerFactory, certificate: tuple[Path, Path]
) -> Iterator[SmtpTestServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    yield smtp_server_factory(tls_context=context, auth=("mailer", "s3cret"))


@pytest.mark.parametrize("mode", ["auto", "starttls"])
async def test_starttls_then_auth(
    tls_server: SmtpTestServer, certificate: tuple[Path, Path], mode: str
) -> None:
    client_context = ssl.create_default_context(cafile=str(certificate[0]))
    transport = SmtpTransport(
        [relay(tls_server, tls=mode, username="mailer", password="s3cret")],
        tls_context=client_context,
    )
    try:
        assert (await send(transport)).code == 250
    finally:
        await transport.close()
    [received] = tls_server.messages()
    assert received.tls is True
    assert [ok for _, ok in tls_server.auth_attempts] == [True]


async def test_untrusted_certificate_is_not_accepted(tls_server: SmtpTestServer) -> None:
    transport = SmtpTransport([relay(tls_server, tls="starttls")])
    with pytest.raises(TransientDeliveryError):
        await send(transport)
    await transport.close()
    assert tls_server.messages() == []


async def test_international_addresses_use_smtputf8(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    email = prepared(to=["ünï@exämple.org"], sender="Jöhn <jöhn@exämple.org>")
    assert (await send(transport, email)).code == 250
    [received] = smtp_server.messages()
    assert received.smtputf8 is True
    assert received.rcpt_tos == ["ünï@exämple.org"]


async def test_smtputf8_refused_by_a_relay_without_it(smtp_server_factory: ServerFactory) -> None:
    server = smtp_server_factory(smtputf8=False)
    transport = SmtpTransport([relay(server)])
    with pytest.raises(PermanentDeliveryError):
        await send(transport, prepared(to=["ünï@exämple.org"]))
    await transport.close()


# --- rate limiting ---------------------------------------------------------------------------


class CountingLimiter:
    def __init__(self) -> None:
        self.acquired: Counter[str] = Counter()

    async def acquire(self, relay: str) -> None:
        self.acquired[relay] += 1


async def test_one_token_per_message_on_the_relay_that_sends(smtp_server: SmtpTestServer) -> None:
    limiter = CountingLimiter()
    dead = RelaySettings(url=f"smtp://127.0.0.1:{dead_port()}", timeout=5)
    transport = SmtpTransport([dead, relay(smtp_server)], rate_limiter=limiter)
    try:
        for _ in range(3):
            await send(transport)
    finally:
        await transport.close()
    assert limiter.acquired == Counter({smtp_server.relay_name: 3})


async def test_relay_rate_spaces_sends(smtp_server: SmtpTestServer) -> None:
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = LocalTokenBucket({smtp_server.relay_name: 10.0}, burst=2,
                               clock=lambda: now[0], sleep=fake_sleep)
    transport = SmtpTransport([relay(smtp_server)], rate_limiter=limiter)
    try:
        await asyncio.gather(*(send(transport) for _ in range(6)))
    finally:
        await transport.close()
    # Two tokens at once, then one per 0.1 s of (fake) time for the four others.
    assert limiter.granted[smtp_server.relay_name] == 6
    assert limiter.waited[smtp_server.relay_name] == 4
    assert sum(slept) == pytest.approx(0.4)
    assert len(smtp_server.messages()) == 6


def test_default_limiter_uses_each_relays_rate(smtp_server: SmtpTestServer) -> None:
    transport = SmtpTransport([relay(smtp_server, rate_per_second=5.0)])
    assert isinstance(transport.rate_limiter, LocalTokenBucket)
    assert transport.rate_limiter.rate_for(smtp_server.relay_name) == 5.0
    assert transport.rate_limiter.rate_for("elsewhere:25") == 0.0


async def test_message_is_sent_as_built(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Bcc"] = "hidden@example.com"
    message["Message-ID"] = "<built@example.com>"
    message.set_content("body line")
    await transport.send(message, "a@example.com", ["b@example.com", "hidden@example.com"])
    [received] = smtp_server.messages()
    assert b"hidden@example.com" not in received.data
    assert b"body line" in received.data
    assert received.rcpt_tos == ["b@example.com", "hidden@example.com"]


async def test_international_reply_to_alone_still_uses_smtputf8(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    data = EmailIn.model_validate({"from": "Shop <shop@example.com>", "to": ["bob@example.com"],
                                   "reply_to": "Jöhn <jöhn@exämple.org>", "subject": "Hi",
                                   "text": "Hello"})
    email = prepare_email(data, MailSettings())
    await transport.send(build_mime(email), email.sender, email.recipients)
    [received] = smtp_server.messages()
    assert received.smtputf8 is True
    assert "Reply-To: Jöhn <jöhn@exämple.org>".encode() in received.data


async def test_a_relay_busy_with_every_connection_is_reachable(smtp_server: SmtpTestServer) -> None:
    smtp_server.data_delay = 3.0
    transport = SmtpTransport([relay(smtp_server, max_connections=1)])
    try:
        sending = asyncio.create_task(send(transport))
        await wait_until(lambda: smtp_server.data_attempts == 1)
        started = time.monotonic()
        assert await transport.check() == smtp_server.relay_name
        assert time.monotonic() - started < 1.0, "the check waited for the busy connection"
        await sending
    finally:
        await transport.close()


async def test_a_cut_after_the_data_is_marked_uncertain(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    email = prepared()
    smtp_server.script(email.message_id, ["drop"])
    with pytest.raises(TransientDeliveryError) as caught:
        await send(transport, email)
    assert caught.value.details["uncertain"] is True
    # A failure before the data went out is not.
    smtp_server.refuse_recipients.add("bob@example.com")
    smtp_server.disconnect_all()
    with pytest.raises(DeliveryError) as refused:
        await send(transport, prepared(to=["bob@example.com"]))
    assert "uncertain" not in refused.value.details


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
