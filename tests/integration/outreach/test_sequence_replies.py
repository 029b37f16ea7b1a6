"""Answers to a sequence, sent over SMTP to the node's inbound listener (SQLite and PostgreSQL):
a human reply stops its enrolment and moves its contact by intent, an out-of-office pauses
until the return date and resumes, a hard bounce ends it, one-click unsubscribe ends it; the
contact nobody answered for gets every follow-up, threaded under the first message."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
import httpx

from email_sender.service import Service
from tests.conftest import wait_for
from tests.integration.outreach.conftest import (
    MONDAY,
    VERP_DOMAIN,
    create_contacts,
    create_sequence,
    sink_messages,
    tick,
    use_clock,
)

DAY = 86400.0
STEPS = [
    {"subject": "Date à {{ city }} en mars ?", "text": "Bonjour {{ first_name }}, une date ?"},
    {"delay": "J+2", "text": "Je me permets de relancer, {{ first_name }}."},
    {"delay": "J+4", "text": "Dernier message, {{ first_name }}."},
]
PEOPLE = [
    {"email": f"{who}@{who}-salle.example", "name": f"{who.title()} Martin", "city": "Lyon",
     "timezone": "Europe/Paris"}
    for who in ("alice", "bruno", "chloe", "david", "emma", "felix")
]


async def to_listener(service: Service, raw: bytes, *, sender: str) -> None:
    await to_listener_at(service, raw, sender, "booking@tour.example")


async def to_listener_at(service: Service, raw: bytes, sender: str, recipient: str) -> None:
    port = service.get("inbound").listener.port
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as smtp:
        await smtp.sendmail(sender, [recipient], raw)


def answer(first: EmailMessage, text: str, *, author: str | None = None, **headers: str) -> bytes:
    reply = EmailMessage()
    reply["From"] = author or first["To"]
    reply["To"] = "booking@tour.example"
    reply["Subject"] = "Re: " + str(first["Subject"])
    reply["Date"] = format_datetime(datetime.now(UTC))
    reply["Message-ID"] = make_msgid(domain="salle.example")
    reply["In-Reply-To"] = first["Message-ID"]
    reply["References"] = first["Message-ID"]
    for name, value in headers.items():
        reply[name.replace("_", "-")] = value
    reply.set_content(text + "\n\n> " + first.get_content().strip())
    return reply.as_bytes()


def hard_bounce(first: EmailMessage) -> bytes:
    """An RFC 3464 report as a relay writes one: 5.1.1 for the recipient, headers returned."""
    recipient = first["To"].addresses[0].addr_spec
    return (
        "From: MAILER-DAEMON@mx.chloe-salle.example\r\n"
        "To: booking@tour.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: {make_msgid(domain='mx.chloe-salle.example')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
        "Your message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.chloe-salle.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {first['Message-ID']}\r\nTo: {recipient}\r\n"
        "\r\n--B--\r\n"
    ).encode()


def firsts(service: Service) -> dict[str, EmailMessage]:
    return {message["To"].addresses[0].addr_spec: message for message in sink_messages(service)
            if "In-Reply-To" not in message}


async def inbound_settled(api: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` messages are stored and every reply among them is classified."""
    items: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal items
        items = (await api.get("/api/v1/inbound")).json()["items"]
        return len(items) >= count and all(
            item["intent"] is not None for item in items if item["kind"] == "reply")

    await wait_for(done, timeout=90)
    return items


async def enrolment_of(api: httpx.AsyncClient, sequence_id: str, email: str) -> dict[str, Any]:
    items = (await api.get(f"/api/v1/sequences/{sequence_id}/enrolments")).json()["items"]
    [found] = [item for item in items if item["email"] == email]
    return dict(found)


async def test_answers_stop_pause_and_end_enrolments_and_move_contacts(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    service = outreach_node
    service.settings.outreach.gap.min = service.settings.outreach.gap.max = 0.0
    clock = use_clock(service, MONDAY + 3 * 3600)  # 11:00 in Paris
    people = await create_contacts(api, PEOPLE)
    ids = {person["email"]: person["id"] for person in people}
    sequence = await create_sequence(api, name="Lyon", steps=STEPS)
    await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                   json={"contact_ids": list(ids.values())})
    arrivals: dict[str, float] = {}
    assert await tick(service, clock, arrivals) == 6
    first = firsts(service)
    alice, bruno, chloe, david, emma, felix = (person["email"] for person in people)

    # Alice answers, a person; Bruno is away until Thursday; Chloé's address does not exist.
    await to_listener(service, answer(
        first[alice], "Bonjour, oui, nous sommes intéressés par une date en mars."),
        sender=alice)
    await to_listener(service, answer(
        first[bruno], "Je suis absent du bureau, de retour le 10/12/2026.",
        Auto_Submitted="auto-replied"), sender=bruno)
    await to_listener(service, hard_bounce(first[chloe]), sender="")
    # Emma unsubscribes with the link of her email (RFC 8058 one-click).
    link = str(first[emma]["List-Unsubscribe"]).split(",")[0].strip(" <>")
    token = link.rpartition("/")[2]
    one_click = await api.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert one_click.status_code == 200
    # Félix was reached by phone: the user moved him by hand, then his reply comes in.
    moved = await api.patch(f"/api/v1/contacts/{ids[felix]}",
                            json={"status": "negotiating", "reason": "au téléphone"})
    assert moved.status_code == 200, moved.text
    await to_listener(service, answer(
        first[felix], "Bonjour, oui, intéressés, on en parle au téléphone."), sender=felix)
    stored = await inbound_settled(api, 4)
    assert {item["from"]: item["kind"] for item in stored} == {
        alice: "reply", bruno: "out_of_office", "mailer-daemon@mx.chloe-salle.example": "bounce",
        felix: "reply"}

    clock.now += 60
    await tick(service, clock, arrivals)
    sequence_id = sequence["id"]
    assert (await enrolment_of(api, sequence_id, alice))["status"] == "replied"
    paused = await enrolment_of(api, sequence_id, bruno)
    assert paused["status"] == "paused"
    assert paused["next_at"].startswith("2026-12-10T08:00")  # 09:00 in Paris, the return day
    assert (await enrolment_of(api, sequence_id, chloe))["status"] == "bounced"
    assert (await enrolment_of(api, sequence_id, emma))["status"] == "unsubscribed"
    assert (await enrolment_of(api, sequence_id, felix))["status"] == "replied"
    assert (await api.get(f"/api/v1/contacts/{ids[chloe]}")).json()["status"] == "bounced"
    assert (await api.get(f"/api/v1/contacts/{ids[emma]}")).json()["status"] == "unsubscribed"

    # Alice's reply moves her contact by what it says; a second reply confirms the date. The
    # history says what moved it each time.
    intents = {item["from"]: item["intent"] for item in stored if item["kind"] == "reply"}
    assert intents[alice] == "interested"
    await to_listener(service, answer(
        first[alice], "C'est confirmé pour le 12 mars, nous vous envoyons le contrat."),
        sender=alice)
    stored = await inbound_settled(api, 5)
    clock.now += 60
    await tick(service, clock, arrivals)
    history = (await api.get(f"/api/v1/contacts/{ids[alice]}/history")).json()["items"]
    assert [(row["to"], row["source"]) for row in history] == [
        ("new", "user"), ("contacted", "sequence"), ("interested", "reply"),
        ("confirmed", "reply")]
    # Félix's reply does not take him back from where the user put him.
    felix_contact = (await api.get(f"/api/v1/contacts/{ids[felix]}")).json()
    assert felix_contact["status"] == "negotiating"

    # Wednesday: David gets the first follow-up, in the thread; Bruno is still away.
    clock.now = MONDAY + 2 * DAY + 3 * 3600
    assert await tick(service, clock, arrivals) == 1
    # Thursday morning: Bruno is back and gets his.
    clock.now = datetime(2026, 12, 10, 8, 0, tzinfo=UTC).timestamp()
    assert await tick(service, clock, arrivals) == 1
    clock.now = MONDAY + 7 * DAY + 3 * 3600
    await tick(service, clock, arrivals)
    clock.now = MONDAY + 9 * DAY + 3 * 3600
    await tick(service, clock, arrivals)

    received: dict[str, list[EmailMessage]] = {}
    for message in sink_messages(service):
        received.setdefault(message["To"].addresses[0].addr_spec, []).append(message)
    assert {address: len(thread) for address, thread in received.items()} == {
        alice: 1, bruno: 3, chloe: 1, david: 3, emma: 1, felix: 1}
    for follow_up in received[david][1:]:
        assert follow_up["In-Reply-To"] == first[david]["Message-ID"]
        assert follow_up["References"] == first[david]["Message-ID"]
        assert follow_up["Subject"] == "Re: Date à Lyon en mars ?"

    stats = (await api.get(f"/api/v1/sequences/{sequence_id}/stats")).json()
    assert stats["enrolments"] == {"replied": 2, "completed": 2, "bounced": 1,
                                   "unsubscribed": 1}
    assert [step["sent"] for step in stats["steps"]] == [6, 2, 2]
    assert stats["replied"] == 2 and stats["reply_rate"] == round(2 / 6, 4)
    assert stats["steps"][0]["replied"] == {"interested": 2, "confirmed": 1}
    assert stats["steps"][0]["out_of_office"] == 1 and stats["steps"][0]["bounced"] == 1
    assert stats["median_reply_seconds"] == 60.0


async def test_writing_to_the_mailto_of_list_unsubscribe_unsubscribes(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    service = outreach_node
    clock = use_clock(service, MONDAY + 3 * 3600)
    [person] = await create_contacts(api, PEOPLE[:1])
    sequence = await create_sequence(api, name="Mailto", steps=STEPS)
    await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                   json={"contact_ids": [person["id"]]})
    assert await tick(service, clock, {}) == 1
    [sent] = sink_messages(service)
    https, mailto = (link.strip(" <>") for link in str(sent["List-Unsubscribe"]).split(","))
    assert https.startswith("https://mail.tour.example/u/")
    address, _, query = mailto.removeprefix("mailto:").partition("?subject=")
    assert address == f"unsubscribe@{VERP_DOMAIN}"
    subject = query.replace("%20", " ")

    def request(subject: str) -> bytes:
        mail = EmailMessage()
        mail["From"] = "secretariat@alice-salle.example"  # the token decides, not the sender
        mail["To"] = address
        mail["Subject"] = subject
        mail["Message-ID"] = make_msgid(domain="alice-salle.example")
        mail.set_content("")
        return mail.as_bytes()

    forged = subject[:-4] + "AAAA"
    await to_listener_at(service, request(forged), "secretariat@alice-salle.example", address)
    await inbound_settled(api, 1)
    assert (await api.get(f"/api/v1/contacts/{person['id']}")).json()["status"] == "contacted"

    await to_listener_at(service, request(subject), "secretariat@alice-salle.example", address)
    await inbound_settled(api, 2)
    contact = (await api.get(f"/api/v1/contacts/{person['id']}")).json()
    assert contact["status"] == "unsubscribed"
    listed = (await api.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"]) for row in listed] == [
        (person["email"], "unsubscribe")]
    [enrolment] = (await api.get(f"/api/v1/sequences/{sequence['id']}/enrolments")).json()[
        "items"]
    assert enrolment["status"] == "unsubscribed"


async def test_a_reply_asking_to_be_left_alone_unsubscribes(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    service = outreach_node
    clock = use_clock(service, MONDAY + 3 * 3600)
    [person] = await create_contacts(api, PEOPLE[:1])
    sequence = await create_sequence(api, name="Retrait", steps=STEPS)
    await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                   json={"contact_ids": [person["id"]]})
    assert await tick(service, clock, {}) == 1
    [sent] = sink_messages(service)
    # The venue's secretary answers from another address, for the one we wrote to.
    await to_listener(service, answer(
        sent, "Merci de nous retirer de votre liste, nous ne souhaitons plus être contactés.",
        author="secretariat@alice-salle.example"), sender="secretariat@alice-salle.example")
    [stored] = await inbound_settled(api, 1)
    assert stored["intent"] == "unsubscribe"
    clock.now += 60
    await tick(service, clock, {})
    listed = (await api.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"]) for row in listed] == [
        (person["email"], "unsubscribe")]
    contact = (await api.get(f"/api/v1/contacts/{person['id']}")).json()
    assert contact["status"] == "unsubscribed"
    stats = (await api.get(f"/api/v1/sequences/{sequence['id']}/stats")).json()
    assert stats["steps"][0]["unsubscribed"] == 1
    assert stats["steps"][0]["replied"] == {"unsubscribe": 1}
