"""Mail coming back through the real doors of a running service: the SMTP listener (with the
VERP return path every send carries) and the IMAP poller reading a real dovecot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from sqlalchemy import func, select

from email_sender.db.schema import inbound_messages
from email_sender.service import Service, build_service
from tests.conftest import asgi_client, free_port, make_settings, wait_for
from tests.support.dovecot import Mailbox
from tests.support.dovecot import dovecot as dovecot  # the fixtures
from tests.support.dovecot import dovecot_server as dovecot_server

FIXTURES = Path(__file__).parents[2] / "fixtures" / "inbound"
BOUNCE_DOMAIN = "bounce.tour.example"
# The secret first: a domain without one is refused.
VERP = {
    "inbound.verp_secret": "a-verp-secret-for-tests",
    "inbound.verp_domain": BOUNCE_DOMAIN,
}


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url, **VERP)
    settings.inbound.smtp.enabled = True
    settings.inbound.smtp.port = 0
    settings.inbound.smtp.domains = [BOUNCE_DOMAIN, "tour.example"]
    async with build_service(settings) as service:
        yield service


@pytest.fixture
async def api(node: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(node) as client:
        yield client


async def send_and_wait(api: httpx.AsyncClient, to: str) -> dict[str, Any]:
    answer = await api.post("/api/v1/emails", json={
        "from": "booking@tour.example", "to": [to], "subject": "Date en mars ?",
        "text": "Bonjour, une date en mars vous intéresserait-elle ?",
    })
    assert answer.status_code == 202, answer.text
    email_id = answer.json()["id"]

    async def sent() -> bool:
        return (await api.get(f"/api/v1/emails/{email_id}")).json()["status"] == "sent"

    await wait_for(sent, timeout=30)
    return dict((await api.get(f"/api/v1/emails/{email_id}")).json())


def listener_port(node: Service) -> int:
    port: int = node.get("inbound").listener.port
    return port


async def deliver(node: Service, raw: bytes, recipient: str, sender: str = "") -> None:
    """What a relay does with a bounce: MAIL FROM:<> (the null sender), RCPT, DATA."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener_port(node), timeout=10) as smtp:
        await smtp.mail(sender)
        await smtp.rcpt(recipient)
        await smtp.data(raw)


async def stored(node: Service) -> int:
    async with node.db.connect() as connection:
        return int((await connection.execute(
            select(func.count()).select_from(inbound_messages))).scalar_one())


async def test_a_bounce_to_the_verp_return_path_is_matched_by_it_alone(
    node: Service, api: httpx.AsyncClient
) -> None:
    email = await send_and_wait(api, "nobody@example.net")
    captured = (await api.get("/api/v1/sink/messages")).json()["items"][0]
    return_path = captured["mail_from"]
    assert return_path.startswith("bounces+") and return_path.endswith("@" + BOUNCE_DOMAIN)
    # The relay returned only headers of another id: the signed token is all that links it.
    raw = (FIXTURES / "postfix_hard.eml").read_bytes().replace(
        b"<test-original-1@example.org>", b"<rewritten-by-a-relay@example.org>"
    )
    await deliver(node, raw, return_path)
    items = (await api.get("/api/v1/inbound", params={"kind": "bounce"})).json()["items"]
    assert [(item["email_id"], item["thread_by"]) for item in items] == [(email["id"], "verp")]
    assert (await api.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "bounced"


async def test_the_signed_return_path_wins_over_a_returned_message_id(
    node: Service, api: httpx.AsyncClient
) -> None:
    first = await send_and_wait(api, "nobody@example.net")
    second = await send_and_wait(api, "nobody@example.net")
    return_path = next(
        item["mail_from"] for item in (await api.get("/api/v1/sink/messages")).json()["items"]
        if item["message_id"] == second["message_id"]
    )
    # A report naming the first email's Message-ID, come back to the second one's return path.
    raw = (FIXTURES / "postfix_hard.eml").read_bytes().replace(
        b"<test-original-1@example.org>", first["message_id"].encode()
    )
    await deliver(node, raw, return_path)
    items = (await api.get("/api/v1/inbound", params={"kind": "bounce"})).json()["items"]
    assert [(item["email_id"], item["thread_by"]) for item in items] == [(second["id"], "verp")]
    assert (await api.get(f"/api/v1/emails/{first['id']}")).json()["status"] == "sent"


async def test_a_reply_from_the_null_sender_is_automatic_not_a_person(
    node: Service, api: httpx.AsyncClient
) -> None:
    # No automatic header or subject: only the envelope's MAIL FROM:<> says a machine wrote it.
    email = await send_and_wait(api, "programmation@venue.example")
    answer = EmailMessage()
    answer["From"] = "programmation@venue.example"
    answer["To"] = "booking@tour.example"
    answer["Subject"] = "Re: Date en mars ?"
    answer["Message-ID"] = make_msgid(domain="venue.example")
    answer["In-Reply-To"] = email["message_id"]
    answer.set_content("Votre message a bien été reçu.")
    await deliver(node, bytes(answer), "booking@tour.example", sender="")
    [item] = (await api.get("/api/v1/inbound")).json()["items"]
    assert (item["kind"], item["email_id"]) == ("auto_reply", email["id"])
    assert (await api.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "sent"


async def test_a_forged_verp_token_links_nothing(node: Service, api: httpx.AsyncClient) -> None:
    email = await send_and_wait(api, "nobody@example.net")
    token = email["id"].replace("-", "")
    forged = f"bounces+{token}-0000000000@{BOUNCE_DOMAIN}"
    raw = (FIXTURES / "postfix_hard.eml").read_bytes()
    await deliver(node, raw, forged)
    items = (await api.get("/api/v1/inbound")).json()["items"]
    assert [item["email_id"] for item in items] == [None]
    assert (await api.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "sent"


async def test_the_listener_refuses_relaying_and_a_30_mb_message(
    node: Service, api: httpx.AsyncClient
) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await aiosmtplib.send(b"Subject: x\r\n\r\nhi\r\n", sender="a@b.example",
                              recipients=["someone@elsewhere.example"],
                              hostname="127.0.0.1", port=listener_port(node), timeout=10)
    assert refused.value.recipients[0].code == 550
    big = EmailMessage()
    big["From"] = "venue@example.net"
    big["To"] = "booking@tour.example"
    big["Subject"] = "Rider et photos"
    big.set_content("x" * (30 * 1024 * 1024))
    with pytest.raises(aiosmtplib.SMTPResponseException) as too_big:
        await aiosmtplib.send(big, hostname="127.0.0.1", port=listener_port(node), timeout=60)
    assert too_big.value.code == 552
    assert await stored(node) == 0


async def test_a_reply_appended_to_the_mailbox_is_read_once_and_threaded(
    tmp_path: Path, database_url: str, dovecot: Mailbox
) -> None:
    settings = make_settings(tmp_path, database_url)
    settings.inbound.imap.url = dovecot.url
    settings.inbound.imap.username = dovecot.user
    settings.inbound.imap.password = dovecot.password  # type: ignore[assignment]
    settings.inbound.imap.interval = 60.0  # IDLE must bring the message, not the interval
    async with build_service(settings) as node, asgi_client(node) as api:
        email = await send_and_wait(api, "programmation@venue.example")
        reply = EmailMessage()
        reply["From"] = "programmation@venue.example"
        reply["To"] = "booking@tour.example"
        reply["Subject"] = "Re: Date en mars ?"
        reply["Message-ID"] = make_msgid(domain="venue.example")
        reply["In-Reply-To"] = email["message_id"]
        reply.set_content("Oui, avec plaisir : le 14 mars est libre pour nous.")
        dovecot.append(bytes(reply))

        async def threaded() -> bool:
            items = (await api.get("/api/v1/inbound")).json()["items"]
            return len(items) == 1 and items[0]["email_id"] == email["id"]

        async def replied() -> bool:
            return (await api.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "replied"

        await wait_for(threaded, timeout=30)
        # The reply is kept first, then acted on: the email turns replied just after.
        await wait_for(replied, timeout=10)
        item = (await api.get("/api/v1/inbound")).json()["items"][0]
        assert (item["via"], item["kind"]) == ("imap", "reply")
        manager = node.get("inbound")
        assert await manager.poller.poll_once() == 0  # nothing is read twice
        assert await stored(node) == 1


async def test_mail_is_received_while_the_vector_store_is_away(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, **{
        "qdrant.url": f"http://127.0.0.1:{free_port()}", "qdrant.timeout": 1.0,
    })
    async with build_service(settings) as node, asgi_client(node) as api:
        raw = (FIXTURES / "reply_fr.eml").read_bytes()
        answer = await api.post("/api/v1/inbound", content=raw,
                                headers={"Content-Type": "message/rfc822"})
        assert answer.status_code == 201, answer.text
        inbound_id = answer.json()["id"]

        async def classified() -> bool:
            detail = (await api.get(f"/api/v1/inbound/{inbound_id}")).json()
            return detail["intent"] is not None

        # Stored, acknowledged and classified; indexed once the store is back.
        await wait_for(classified, timeout=60)
        detail = (await api.get(f"/api/v1/inbound/{inbound_id}")).json()
        assert detail["vector_state"] == "pending"
        assert node.get("inbound").analyst.counters["indexed"] == 0
