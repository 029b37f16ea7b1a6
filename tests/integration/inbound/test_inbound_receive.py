"""Received mail through the running service: bounces, replies, auto-replies, labels, threads.

Each test sends a real email through the capture sink first, then feeds back what a relay or a
person would answer, over the provider webhook (POST /api/v1/inbound).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.db.schema import inbound_messages, suppressions
from email_sender.events import Event
from email_sender.service import Service
from email_sender.webhooks.signing import verify
from tests.conftest import wait_for
from tests.support.http_receiver import Receiver as HttpReceiver
from tests.support.http_receiver import receiver_factory as receiver_factory  # the fixture

FIXTURES = Path(__file__).parents[2] / "fixtures" / "inbound"
VENUE = "programmation@lacigale.example"


async def sent_email(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "from": "booking@tour.example",
        "to": [VENUE],
        "subject": "Proposition de concert : Les Ondes, mars 2026",
        "text": "Bonjour, nous proposons une date en mars. Cordialement.",
        **fields,
    }
    answer = await client.post("/api/v1/emails", json=body)
    assert answer.status_code == 202, answer.text
    email_id = answer.json()["id"]

    async def sent() -> bool:
        return (await client.get(f"/api/v1/emails/{email_id}")).json()["status"] == "sent"

    await wait_for(sent, timeout=30)
    return dict((await client.get(f"/api/v1/emails/{email_id}")).json())


def reply_to(email: dict[str, Any], text: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"La Cigale <{VENUE}>"
    message["To"] = email["from"]
    message["Subject"] = "Re: " + email["subject"]
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid(domain="lacigale.example")
    message["In-Reply-To"] = email["message_id"]
    message["References"] = email["message_id"]
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return bytes(message)


def dsn_for(email: dict[str, Any], sample: str = "postfix_hard.eml") -> bytes:
    raw = (FIXTURES / sample).read_bytes()
    for returned in (b"<test-original-1@example.org>", b"<test-original-2@example.org>"):
        raw = raw.replace(returned, email["message_id"].encode())
    return raw


async def post_raw(client: httpx.AsyncClient, raw: bytes) -> httpx.Response:
    return await client.post(
        "/api/v1/inbound", content=raw, headers={"Content-Type": "message/rfc822"}
    )


async def analysed(client: httpx.AsyncClient, inbound_id: str) -> dict[str, Any]:
    async def done() -> bool:
        row = (await client.get(f"/api/v1/inbound/{inbound_id}")).json()
        return bool(row["vector_state"] != "pending")

    await wait_for(done, timeout=60)
    return dict((await client.get(f"/api/v1/inbound/{inbound_id}")).json())


async def count_rows(service: Service) -> int:
    async with service.db.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(
            inbound_messages))).scalar_one())


async def test_a_hard_bounce_marks_the_email_bounced_and_suppresses_the_address(
    service: Service, client: httpx.AsyncClient
) -> None:
    events: list[Event] = []

    async def seen(event: Event) -> None:
        events.append(event)

    service.bus.subscribe("email.bounced", seen)
    email = await sent_email(client, to=["nobody@example.net"])
    answer = await post_raw(client, dsn_for(email))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["kind"], body["email_id"], body["created"]) == ("bounce", email["id"], True)
    assert (await client.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "bounced"
    listed = (await client.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"]) for row in listed] == [
        ("nobody@example.net", "hard_bounce")
    ]
    detail = (await client.get(f"/api/v1/inbound/{body['id']}")).json()
    assert detail["details"]["recipients"][0]["status"] == "5.1.1"
    assert detail["thread_by"] == "returned"
    await wait_for(lambda: len(events) == 1, timeout=5)
    assert events[0].data["address"] == "nobody@example.net"


async def test_a_bounce_whose_diagnostic_holds_a_nul_is_stored_and_acted_on(
    service: Service, client: httpx.AsyncClient
) -> None:
    # PostgreSQL refuses NUL in text: the diagnostic must be cleaned before it is stored.
    email = await sent_email(client, to=["nobody@example.net"])
    raw = dsn_for(email).replace(b"Recipient address rejected", b"Recipient\x00address rejected")
    answer = await post_raw(client, raw)
    assert answer.status_code == 201, answer.text
    assert (await client.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "bounced"
    listed = (await client.get("/api/v1/suppressions")).json()["items"]
    assert [row["address"] for row in listed] == ["nobody@example.net"]


async def test_the_same_message_twice_is_stored_once(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client, to=["nobody@example.net"])
    raw = dsn_for(email)
    first = (await post_raw(client, raw)).json()
    again = await post_raw(client, raw)
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["created"] is False
    assert await count_rows(service) == 1


async def test_a_dsn_for_an_unknown_email_is_kept_and_changes_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    raw = (FIXTURES / "postfix_hard.eml").read_bytes()
    answer = await post_raw(client, raw)
    assert answer.status_code == 201
    detail = (await client.get(f"/api/v1/inbound/{answer.json()['id']}")).json()
    assert detail["kind"] == "bounce" and detail["email_id"] is None
    assert "unmatched" in detail["details"]
    async with service.db.connect() as connection:
        assert (await connection.execute(select(suppressions))).first() is None


async def test_soft_bounces_suppress_only_past_the_limit(
    service: Service, client: httpx.AsyncClient
) -> None:
    service.settings.inbound.soft_bounce_limit = 2
    # The address the delay notice sample reports on.
    first = await sent_email(client, to=["slow@example.com"])
    notice = written_now(dsn_for(first, "postfix_delayed.eml"))
    assert (await post_raw(client, notice)).json()["kind"] == "bounce"
    # A second notice about the same email (the relay is still trying) counts once.
    again = await post_raw(client, notice.replace(b"Message-Id: <", b"Message-Id: <again-", 1))
    assert again.status_code == 201 and again.json()["created"] is True
    assert (await client.get("/api/v1/suppressions")).json()["items"] == []
    second = await sent_email(client, to=["slow@example.com"])
    assert (await post_raw(client, written_now(dsn_for(second, "postfix_delayed.eml")))
            ).status_code == 201
    listed = (await client.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"]) for row in listed] == [
        ("slow@example.com", "soft_bounces")
    ]
    # A delay is not a bounce of the email: it may still arrive.
    assert (await client.get(f"/api/v1/emails/{first['id']}")).json()["status"] == "sent"


async def test_old_delay_notices_read_now_do_not_suppress(
    service: Service, client: httpx.AsyncClient
) -> None:
    # A mailbox read for the first time: notices written months ago arrive all at once.
    service.settings.inbound.soft_bounce_limit = 2
    for _ in range(3):
        email = await sent_email(client, to=["slow@example.com"])
        old = dsn_for(email, "postfix_delayed.eml")  # written on 4 March 2025
        assert (await post_raw(client, old)).status_code == 201
    assert (await client.get("/api/v1/suppressions")).json()["items"] == []


def written_now(raw: bytes) -> bytes:
    """The report with its own Date (the first header that names one) set to now."""
    head, separator, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    index = next(n for n, line in enumerate(lines) if line.startswith(b"Date:"))
    lines[index] = b"Date: " + format_datetime(datetime.now().astimezone()).encode()
    return b"\n".join(lines) + separator + body


async def test_a_reply_is_threaded_marked_and_classified_by_meaning(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client)
    text = (
        "Bonjour,\n\nMerci pour votre proposition. Malheureusement ce n'est pas possible pour "
        "nous cette saison, la programmation est bouclée.\n\nBien à vous,\nClaire\n\n"
        f"Le lun. 3 mars 2025 à 10:12, Booking <{email['from']}> a écrit :\n"
        "> Bonjour, nous proposons une date en mars.\n"
    )
    answer = await post_raw(client, reply_to(email, text))
    assert answer.status_code == 201
    body = answer.json()
    assert (body["kind"], body["email_id"]) == ("reply", email["id"])
    assert (await client.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "replied"
    detail = await analysed(client, body["id"])
    assert detail["thread_by"] == "in_reply_to"
    assert "pas possible" in detail["own_words"]
    assert "a écrit" not in detail["own_words"] and "nous proposons" in detail["quoted"]
    assert detail["intent"] == "declined", detail["classification"]
    assert detail["classification"]["layer"] == "embedding"
    assert detail["answers"]["id"] == email["id"]
    # Semantic search covers both sides of the conversation.
    found = await client.post("/api/v1/search", json={
        "query": "la programmation est bouclée, pas possible cette saison",
        "limit": 3, "filter": {"direction": "inbound"},
    })
    assert found.status_code == 200, found.text
    top = found.json()["results"][0]
    assert top["id"] == body["id"] and "pas possible" in top["snippet"]
    assert (top["payload"]["intent"], top["payload"]["email_id"]) == ("declined", email["id"])


async def test_an_out_of_office_is_threaded_but_not_a_reply(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client)
    raw = reply_to(
        email,
        "Bonjour, je suis absente du bureau et serai de retour le 3 mars. Cordialement.",
        Auto_Submitted="auto-replied",
    )
    body = (await post_raw(client, raw)).json()
    assert (body["kind"], body["email_id"]) == ("out_of_office", email["id"])
    assert (await client.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "sent"
    replies = (await client.get(f"/api/v1/emails/{email['id']}/replies")).json()
    assert replies["human_replies"] == 0 and len(replies["items"]) == 1
    detail = (await client.get(f"/api/v1/inbound/{body['id']}")).json()
    assert detail["intent"] == "out_of_office" and detail["classification"]["layer"] == "headers"
    assert detail["details"]["return_date"].endswith("-03-03")


async def test_the_conversation_lists_both_directions_in_order(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client)
    first = (await post_raw(client, reply_to(email, "Oui, intéressés ! Quel est votre cachet ?"))
             ).json()
    follow_up = await client.post("/api/v1/emails", json={
        "from": email["from"], "to": [VENUE], "subject": "Re: " + email["subject"],
        "text": "Notre cachet est de 1500 euros.",
        "headers": {"In-Reply-To": email["message_id"], "References": email["message_id"]},
    })
    assert follow_up.status_code == 202, follow_up.text
    thread = (await client.get(f"/api/v1/conversations/{email['id']}")).json()
    assert [(item["direction"], item["id"]) for item in thread["messages"]] == [
        ("outbound", email["id"]),
        ("inbound", first["id"]),
        ("outbound", follow_up.json()["id"]),
    ]
    assert (await client.get("/api/v1/conversations/no-such-email")).status_code == 404


async def test_a_label_is_saved_and_changes_the_next_similar_reply(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client)
    text = "On en reparle à la rentrée, là on ne sait pas encore."
    first = await analysed(client, (await post_raw(client, reply_to(email, text))).json()["id"])
    wanted = "declined" if first["intent"] != "declined" else "question"
    answer = await client.post(f"/api/v1/inbound/{first['id']}/label", json={"intent": wanted})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["intent"], answer.json()["layer"]) == (wanted, "label")
    # Indexed again: search shows the corrected intent.
    await analysed(client, first["id"])
    found = (await client.post("/api/v1/search", json={
        "query": text, "limit": 1, "filter": {"direction": "inbound"}})).json()["results"]
    assert (found[0]["id"], found[0]["payload"]["intent"]) == (first["id"], wanted)
    again = reply_to(email, "On en reparle à la rentrée, là on ne sait pas encore !")
    second = await analysed(client, (await post_raw(client, again)).json()["id"])
    assert second["intent"] == wanted, second["classification"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"intent": "maybe"}, 422, "intent"),
        ({"intent": "declined", "extra": 1}, 422, "extra"),
        ({}, 422, "intent"),
    ],
)
async def test_a_bad_label_is_refused_and_changes_nothing(
    service: Service, client: httpx.AsyncClient, body: dict[str, Any], status: int, field: str
) -> None:
    email = await sent_email(client)
    stored = (await post_raw(client, reply_to(email, "Avec plaisir, on confirme !"))).json()
    before = await analysed(client, stored["id"])
    answer = await client.post(f"/api/v1/inbound/{stored['id']}/label", json=body)
    assert answer.status_code == status
    assert field in answer.text
    after = (await client.get(f"/api/v1/inbound/{stored['id']}")).json()
    assert after["label"] is None
    assert (after["intent"], after["layer"]) == (before["intent"], before["layer"])
    missing = await client.post("/api/v1/inbound/nope/label", json={"intent": "declined"})
    assert missing.status_code == 404


async def test_a_bounce_takes_no_label(service: Service, client: httpx.AsyncClient) -> None:
    stored = (await post_raw(client, (FIXTURES / "postfix_hard.eml").read_bytes())).json()
    answer = await client.post(f"/api/v1/inbound/{stored['id']}/label",
                               json={"intent": "declined"})
    assert answer.status_code == 422 and "intent" in answer.text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", 422),
        (b"   \r\n", 422),
        (b"\x00\x01\x02 not a message at all", 422),
    ],
)
async def test_bad_raw_input_is_refused_with_a_reason(
    service: Service, client: httpx.AsyncClient, raw: bytes, status: int
) -> None:
    answer = await post_raw(client, raw)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]
    assert await count_rows(service) == 0


async def test_a_message_over_the_limit_is_refused_and_nothing_is_stored(
    service: Service, client: httpx.AsyncClient
) -> None:
    service.settings.inbound.smtp.max_message_bytes = 64 * 1024  # never above the service's
    service.settings.inbound.max_message_bytes = 64 * 1024
    message = EmailMessage()
    message["From"] = VENUE
    message["Subject"] = "big"
    message.set_content("x" * 100_000)
    answer = await post_raw(client, bytes(message))
    assert answer.status_code == 413, answer.text
    assert await count_rows(service) == 0


async def test_a_malformed_mime_tree_and_an_eight_bit_header_are_stored(
    service: Service, client: httpx.AsyncClient
) -> None:
    for sample in ("malformed_mime.eml", "eight_bit_header.eml"):
        answer = await post_raw(client, (FIXTURES / sample).read_bytes())
        assert answer.status_code == 201, (sample, answer.text)
        detail = (await client.get(f"/api/v1/inbound/{answer.json()['id']}")).json()
        assert detail["defects"], sample


async def test_the_inbound_list_filters_and_pages(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client, to=["nobody@example.net"])
    bounce = (await post_raw(client, dsn_for(email))).json()
    reply = (await post_raw(client, reply_to(email, "Merci, on confirme pour le 3 mars."))).json()

    async def listed(**params: Any) -> list[str]:
        answer = await client.get("/api/v1/inbound", params=params)
        assert answer.status_code == 200, answer.text
        return [row["id"] for row in answer.json()["items"]]

    assert await listed(kind="bounce") == [bounce["id"]]
    assert set(await listed(email_id=email["id"])) == {bounce["id"], reply["id"]}
    classified = await analysed(client, reply["id"])
    assert classified["intent"] == "confirmed", classified
    assert await listed(intent="confirmed") == [reply["id"]]
    assert await listed(intent="declined") == []
    assert reply["id"] in await listed(needs_review=classified["needs_review"])
    assert reply["id"] not in await listed(needs_review=not classified["needs_review"])
    assert await listed(**{"from": VENUE.upper()}) == [reply["id"]]
    assert await listed(**{"from": "someone-else@example.org"}) == []
    assert await listed(since="2999-01-01T00:00:00Z") == []
    assert set(await listed(since="2000-01-01T00:00:00Z")) == {bounce["id"], reply["id"]}
    page = (await client.get("/api/v1/inbound", params={"limit": 1})).json()
    rest = (await client.get("/api/v1/inbound", params={"limit": 1,
                                                        "cursor": page["next_cursor"]})).json()
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == {bounce["id"], reply["id"]}
    for bad in ({"kind": "nonsense"}, {"cursor": "garbage"}, {"limit": 0}, {"since": "x"}):
        assert (await client.get("/api/v1/inbound", params=bad)).status_code == 422, bad


async def test_a_bounce_for_an_address_the_email_never_went_to_changes_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client, to=["someone.else@example.net"])
    body = (await post_raw(client, dsn_for(email))).json()
    assert (body["kind"], body["email_id"]) == ("bounce", email["id"])
    assert (await client.get(f"/api/v1/emails/{email['id']}")).json()["status"] == "sent"
    assert (await client.get("/api/v1/suppressions")).json()["items"] == []


async def test_a_bounce_reaches_a_subscribed_webhook_signed(
    service: Service, client: httpx.AsyncClient, receiver_factory: Callable[..., HttpReceiver]
) -> None:
    receiver = receiver_factory()
    service.settings.webhooks.allow_private_networks = True  # the receiver is on loopback
    secret = "a-webhook-secret-of-some-length"
    subscribed = await client.post("/api/v1/webhooks", json={
        "url": receiver.url, "events": ["email.bounced", "inbound.received"], "secret": secret,
    })
    assert subscribed.status_code == 201, subscribed.text
    email = await sent_email(client, to=["nobody@example.net"])
    await post_raw(client, dsn_for(email))
    await wait_for(lambda: len(receiver.requests) >= 2, timeout=30)
    by_type = {request.headers["x-email-sender-event"]: request for request in receiver.requests}
    bounced = by_type["email.bounced"]
    assert verify(secret, bounced.headers["x-email-sender-timestamp"], bounced.body,
                  bounced.headers["x-email-sender-signature"])
    data = json.loads(bounced.body)["data"]
    assert (data["email_id"], data["address"], data["status"]) == (
        email["id"], "nobody@example.net", "5.1.1"
    )


async def test_raw_sources_are_emptied_after_the_retention(
    service: Service, client: httpx.AsyncClient
) -> None:
    kept = (await post_raw(client, (FIXTURES / "reply_fr.eml").read_bytes())).json()
    service.settings.inbound.retention = 0.001
    expiring = (await post_raw(client, (FIXTURES / "ooo_en.eml").read_bytes())).json()
    store = service.inbound.store  # type: ignore[union-attr]
    assert await store.expire_raw() == 1
    assert (await client.get(f"/api/v1/inbound/{expiring['id']}")).json()["raw_kept"] is False
    detail = (await client.get(f"/api/v1/inbound/{kept['id']}")).json()
    assert detail["raw_kept"] is True and detail["own_words"]


def complaint_for(email: dict[str, Any]) -> bytes:
    raw = (FIXTURES / "arf_complaint.eml").read_bytes()
    return raw.replace(b"<test-original-6@example.org>", email["message_id"].encode())


async def test_a_complaint_suppresses_the_complaining_recipient(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client, to=["annoyed.user@yahoo.com"])
    body = (await post_raw(client, complaint_for(email))).json()
    assert (body["kind"], body["email_id"]) == ("complaint", email["id"])
    listed = (await client.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"]) for row in listed] == [
        ("annoyed.user@yahoo.com", "complaint")
    ]


async def test_a_complaint_naming_someone_the_email_never_went_to_suppresses_nobody(
    service: Service, client: httpx.AsyncClient
) -> None:
    email = await sent_email(client, to=["reader@example.net"])
    body = (await post_raw(client, complaint_for(email))).json()
    assert (body["kind"], body["email_id"]) == ("complaint", email["id"])
    assert (await client.get("/api/v1/suppressions")).json()["items"] == []


async def test_an_overlong_from_and_message_id_are_stored_within_their_columns(
    service: Service, client: httpx.AsyncClient
) -> None:
    long_local = "x" * 400
    raw = (f"From: {long_local}@example.org\r\nTo: booking@tour.example\r\n"
           f"Subject: long\r\nMessage-ID: <{'y' * 990}@example.org>\r\n\r\nHello\r\n")
    answer = await post_raw(client, raw.encode())
    assert answer.status_code == 201, answer.text
    detail = (await client.get(f"/api/v1/inbound/{answer.json()['id']}")).json()
    assert detail["subject"] == "long"
    for field, limit in (("from", 320), ("message_id", 998)):
        assert detail[field] is not None and 0 < len(detail[field]) <= limit, field
