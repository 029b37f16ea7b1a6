"""Right to erasure through the running service, on SQLite and PostgreSQL: a real email sent
through the capture sink and indexed, a real reply received and indexed, then
``DELETE /api/v1/contacts/{id}?erase=true``. Bodies are blank, points gone, the address
suppressed, and bad requests change nothing."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from email_sender.db import audit
from email_sender.db.schema import classifier_labels, emails, enrolments, inbound_messages
from email_sender.service import Service, build_service
from email_sender.settings import Settings
from tests.conftest import wait_for
from tests.support.vectors import flaky_store, install_flaky_store

VENUE = "programmation@lacigale.example"
OTHER = "booking@olympia.example"
SUBJECT = "Proposition de concert : Les Ondes, mars 2026"
TEXT = "Bonjour, nous proposons une date en mars pour Les Ondes. Cordialement."
REPLY = "Merci ! La date du 12 mars nous intéresse beaucoup, pouvez-vous envoyer la fiche ?"


async def sent_and_indexed(client: httpx.AsyncClient, to: str) -> dict[str, Any]:
    answer = await client.post("/api/v1/emails", json={
        "from": "booking@tour.example", "to": [f"La Cigale <{to}>"], "subject": SUBJECT,
        "text": TEXT, "html": f"<p>{TEXT}</p>",
        "attachments": [{"filename": "fiche.txt", "content_type": "text/plain",
                         "content_base64": base64.b64encode(b"fiche technique").decode()}],
    })
    assert answer.status_code == 202, answer.text
    url = f"/api/v1/emails/{answer.json()['id']}"

    async def done() -> bool:
        email = (await client.get(url)).json()
        return bool(email["status"] == "sent" and email["vector_state"] == "indexed")

    await wait_for(done, timeout=60)
    return dict((await client.get(url)).json())


async def replied(client: httpx.AsyncClient, email: dict[str, Any]) -> dict[str, Any]:
    message = EmailMessage()
    message["From"] = f"La Cigale <{VENUE}>"
    message["To"] = email["from"]
    message["Subject"] = "Re: " + email["subject"]
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid(domain="lacigale.example")
    message["In-Reply-To"] = email["message_id"]
    message.set_content(REPLY)
    answer = await client.post("/api/v1/inbound", content=bytes(message),
                               headers={"Content-Type": "message/rfc822"})
    assert answer.status_code == 201, answer.text
    url = f"/api/v1/inbound/{answer.json()['id']}"

    async def indexed() -> bool:
        return bool((await client.get(url)).json()["vector_state"] == "indexed")

    await wait_for(indexed, timeout=60)
    return dict((await client.get(url)).json())


async def points(service: Service, ids: list[str]) -> set[str]:
    store = await service.get("qdrant_manager").ready_store()
    found = await store.retrieve(service.settings.collections.emails, ids)
    return {point.id for point in found}


async def snapshot(service: Service, client: httpx.AsyncClient) -> dict[str, Any]:
    """What an erasure changes, to check that a refused one changed nothing."""
    async with service.db.connect() as connection:
        bodies = sorted(tuple(row) for row in await connection.execute(
            select(emails.c.id, emails.c.subject, emails.c.text_body, emails.c.status)))
        received = sorted(tuple(row) for row in await connection.execute(
            select(inbound_messages.c.id, inbound_messages.c.own_words, inbound_messages.c.raw)))
        enrolled = (await connection.execute(select(func.count()).select_from(enrolments)))
        state: dict[str, Any] = {
            "emails": bodies, "inbound": received, "enrolments": enrolled.scalar()}
    # The API's own connections after this one is closed (SQLite has one).
    return {
        **state,
        "suppressions": (await client.get("/api/v1/suppressions")).json()["items"],
        "contacts": (await client.get("/api/v1/contacts")).json()["items"],
        "points": await points(service, [row[0] for row in bodies + received]),
    }


@pytest.fixture
async def story(service: Service, client: httpx.AsyncClient) -> dict[str, Any]:
    """A contact written to, who answered (labelled by an operator) and is enrolled; and an
    email to someone else, which the erasure must leave alone."""
    made = await client.post("/api/v1/contacts", json={"email": VENUE, "name": "La Cigale"})
    assert made.status_code == 201, made.text
    contact = made.json()
    moved = await client.patch(f"/api/v1/contacts/{contact['id']}", json={"status": "contacted"})
    assert moved.status_code == 200
    email = await sent_and_indexed(client, VENUE)
    other = await sent_and_indexed(client, OTHER)
    reply = await replied(client, email)
    assert reply["email_id"] == email["id"]
    labelled = await client.post(f"/api/v1/inbound/{reply['id']}/label",
                                 json={"intent": "interested"})
    assert labelled.status_code == 200, labelled.text
    now = time.time()
    async with service.db.transaction() as connection:
        await connection.execute(insert(enrolments).values(
            id=str(uuid.uuid4()), sequence_id=str(uuid.uuid4()), contact_id=contact["id"],
            status="active", next_step=1, next_at=now, created_at=now, updated_at=now))
    assert await points(service, [email["id"], reply["id"], other["id"]]) == {
        email["id"], reply["id"], other["id"]}
    return {"contact": contact, "email": email, "other": other, "reply": reply}


async def test_erasure_blanks_the_mail_deletes_the_points_and_suppresses_the_address(
    service: Service, client: httpx.AsyncClient, story: dict[str, Any]
) -> None:
    contact, email, other, reply = (story[key] for key in ("contact", "email", "other", "reply"))
    answer = await client.delete(f"/api/v1/contacts/{contact['id']}", params={"erase": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "contact_id": contact["id"], "emails": 1, "cancelled": 0, "inbound": 1, "vectors": 2,
        "history": 2, "enrolments": 1, "labels": 1, "suppressed": "added",
    }

    # The contact and its history are gone.
    for url in (f"/api/v1/contacts/{contact['id']}", f"/api/v1/contacts/{contact['id']}/history"):
        assert (await client.get(url)).status_code == 404
    async with service.db.connect() as connection:
        for table in (enrolments, classifier_labels):
            assert (await connection.execute(select(func.count()).select_from(table))).scalar() == 0
        raw = (await connection.execute(select(inbound_messages.c.raw).where(
            inbound_messages.c.id == reply["id"]))).scalar()
    assert raw is None

    # What was written and received is blank; the other person's email is untouched.
    blanked = (await client.get(f"/api/v1/emails/{email['id']}")).json()
    assert (blanked["subject"], blanked["text"], blanked["html"], blanked["attachments"]) == (
        "", None, None, [])
    assert (blanked["status"], blanked["vector_state"]) == ("replied", "erased")
    received = (await client.get(f"/api/v1/inbound/{reply['id']}")).json()
    assert (received["subject"], received["text"], received["own_words"], received["quoted"],
            received["from_name"], received["headers"], received["raw_kept"]) == (
        "", "", "", "", None, [], False)
    kept = (await client.get(f"/api/v1/emails/{other['id']}")).json()
    assert (kept["subject"], kept["text"], kept["vector_state"]) == (SUBJECT, TEXT, "indexed")

    # The points are gone, and search no longer finds them; the other email's point stays.
    assert await points(service, [email["id"], reply["id"], other["id"]]) == {other["id"]}
    for query in (TEXT, REPLY):
        found = await client.post("/api/v1/search", json={"query": query, "limit": 100})
        assert found.status_code == 200, found.text
        assert {hit["id"] for hit in found.json()["results"]} == {other["id"]}

    # The address is suppressed: a new email to it is never sent.
    listed = (await client.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"]) for row in listed] == [(VENUE, "erased")]
    again = await client.post("/api/v1/emails", json={
        "from": "booking@tour.example", "to": [VENUE], "subject": "Relance", "text": "Alors ?"})
    assert again.status_code == 202, again.text

    async def suppressed() -> bool:
        status = (await client.get(f"/api/v1/emails/{again.json()['id']}")).json()["status"]
        assert status in ("queued", "sending", "suppressed"), status
        return bool(status == "suppressed")

    await wait_for(suppressed, timeout=30)

    # The audit log says who erased which contact, with the counts and without the address.
    [record] = [row for row in await audit.recent(service.db) if row["action"] == "contact_erased"]
    assert (record["target"], record["details"]["emails"]) == (contact["id"], 1)
    assert VENUE not in str(record)

    # Erasing twice: the contact is gone.
    twice = await client.delete(f"/api/v1/contacts/{contact['id']}", params={"erase": "true"})
    assert twice.status_code == 404


async def test_an_email_not_sent_yet_is_cancelled_not_sent_blank(
    service: Service, client: httpx.AsyncClient
) -> None:
    made = (await client.post("/api/v1/contacts", json={"email": VENUE})).json()
    later = datetime.fromtimestamp(time.time() + 3600).astimezone().isoformat()
    queued = await client.post("/api/v1/emails", json={
        "from": "booking@tour.example", "to": [VENUE, OTHER], "subject": SUBJECT, "text": TEXT,
        "send_at": later})
    assert queued.status_code == 202, queued.text
    answer = await client.delete(f"/api/v1/contacts/{made['id']}?erase=true")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["emails"], answer.json()["cancelled"]) == (1, 1)
    email = (await client.get(f"/api/v1/emails/{queued.json()['id']}")).json()
    assert (email["status"], email["subject"], email["text"]) == ("cancelled", "", None)


@pytest.mark.parametrize(
    ("url", "status", "named"),
    [
        ("/api/v1/contacts/{unknown}?erase=true", 404, "no contact"),
        ("/api/v1/contacts/{contact}?erase=maybe", 422, "erase"),
        ("/api/v1/contacts/{contact}?erase=", 422, "erase"),
    ],
)
async def test_a_refused_erasure_changes_nothing(
    service: Service, client: httpx.AsyncClient, story: dict[str, Any], url: str, status: int,
    named: str,
) -> None:
    before = await snapshot(service, client)
    answer = await client.delete(
        url.format(unknown=uuid.uuid4(), contact=story["contact"]["id"]))
    assert answer.status_code == status, answer.text
    assert named in answer.json()["error"]["message"]
    assert await snapshot(service, client) == before


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The real service whose vector store can be made unreachable (FlakyStore passes every
    call to the real store until told otherwise)."""
    node = build_service(settings)
    install_flaky_store(node)
    async with node:
        yield node


async def test_a_vector_store_that_cannot_answer_stops_the_erasure_before_any_change(
    service: Service, client: httpx.AsyncClient, story: dict[str, Any]
) -> None:
    before = await snapshot(service, client)
    flaky_store(service).down = True
    answer = await client.delete(f"/api/v1/contacts/{story['contact']['id']}?erase=true")
    assert answer.status_code == 503, answer.text
    flaky_store(service).down = False
    assert await snapshot(service, client) == before
    retried = await client.delete(f"/api/v1/contacts/{story['contact']['id']}?erase=true")
    assert retried.status_code == 200, retried.text
