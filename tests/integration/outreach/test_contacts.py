"""Contacts through the API on SQLite and PostgreSQL: fields checked by name, the lifecycle
enforced and recorded, imports reported row by row, and bad input changing nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.db.schema import contact_history, contacts
from email_sender.service import Service

VENUE = {
    "email": "Programmation@LaCigale.example",
    "name": "La Cigale",
    "organisation": "La Cigale SAS",
    "city": "Paris",
    "country": "FR",
    "timezone": "Europe/Paris",
    "language": "fr",
    "tags": ["salle", "paris", "salle"],
    "attributes": {"capacity": 1400, "genres": ["rock", "pop"]},
    "consent": {"basis": "legitimate_interest", "source": "site web, page contact"},
}


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/contacts", json={**VENUE, **fields})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def count(service: Service) -> tuple[int, int]:
    async with service.db.connect() as connection:
        people = (await connection.execute(select(func.count()).select_from(contacts))).scalar()
        moves = (await connection.execute(select(func.count()).select_from(contact_history)))
        return int(people or 0), int(moves.scalar() or 0)


async def test_a_contact_is_created_normalised_read_and_listed(
    service: Service, client: httpx.AsyncClient
) -> None:
    created = await create(client)
    assert created["email"] == "programmation@lacigale.example"
    assert created["status"] == "new"
    assert created["tags"] == ["salle", "paris"]
    assert created["attributes"]["capacity"] == 1400
    assert created["consent"] == VENUE["consent"]
    assert (await client.get(f"/api/v1/contacts/{created['id']}")).json() == created
    listed = (await client.get("/api/v1/contacts", params={"tag": "paris"})).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert (await client.get("/api/v1/contacts", params={"q": "cigale"})).json()["items"]
    assert (await client.get("/api/v1/contacts", params={"tag": "lyon"})).json()["items"] == []
    assert (await client.get("/api/v1/contacts", params={"status": "confirmed"})).json()[
        "items"] == []


async def test_the_same_address_twice_is_a_conflict(
    service: Service, client: httpx.AsyncClient
) -> None:
    await create(client)
    again = await client.post("/api/v1/contacts", json={"email": "programmation@lacigale.EXAMPLE"})
    assert again.status_code == 409, again.text
    assert "already a contact" in again.json()["error"]["message"]
    assert await count(service) == (1, 1)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"email": "not an address"}, "email"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"language": "français"}, "language"),
        ({"tags": ["ok", ""]}, "tags"),
        ({"tags": [f"t{n}" for n in range(51)]}, "tags"),
        ({"attributes": {"blob": "x" * 20_000}}, "attributes"),
        ({"attributes": ["not", "an", "object"]}, "attributes"),
        ({"consent": {"basis": "Because!"}}, "consent"),
        ({"name": "La\nCigale"}, "name"),
        ({"status": "famous"}, "status"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_fields_are_refused_by_name_and_store_nothing(
    service: Service, client: httpx.AsyncClient, fields: dict[str, Any], named: str
) -> None:
    answer = await client.post("/api/v1/contacts", json={**VENUE, **fields})
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert await count(service) == (0, 0)


async def test_the_lifecycle_is_enforced_and_every_move_recorded(
    service: Service, client: httpx.AsyncClient
) -> None:
    contact = await create(client)
    url = f"/api/v1/contacts/{contact['id']}"
    for status, reason in [("contacted", "first email"), ("interested", "called back"),
                           ("confirmed", "contract signed")]:
        answer = await client.patch(url, json={"status": status, "reason": reason})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status

    forbidden = await client.patch(url, json={"status": "new", "city": "Lyon"})
    assert forbidden.status_code == 422, forbidden.text
    message = forbidden.json()["error"]["message"]
    assert "from 'confirmed' to 'new'" in message and "done" in message
    current = (await client.get(url)).json()
    assert (current["status"], current["city"]) == ("confirmed", "Paris")  # nothing changed

    # Unsubscribed is reachable from anywhere; from there, nowhere.
    assert (await client.patch(url, json={"status": "unsubscribed"})).status_code == 200
    assert (await client.patch(url, json={"status": "contacted"})).status_code == 422

    history = (await client.get(f"{url}/history")).json()["items"]
    assert [(item["from"], item["to"], item["reason"]) for item in history] == [
        (None, "new", "created"),
        ("new", "contacted", "first email"),
        ("contacted", "interested", "called back"),
        ("interested", "confirmed", "contract signed"),
        ("confirmed", "unsubscribed", None),
    ]
    assert {item["source"] for item in history} == {"user"}


async def test_a_field_change_alone_moves_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    contact = await create(client)
    url = f"/api/v1/contacts/{contact['id']}"
    changed = (await client.patch(url, json={"city": "Lyon", "tags": None})).json()
    assert (changed["city"], changed["tags"], changed["status"]) == ("Lyon", [], "new")
    assert len((await client.get(f"{url}/history")).json()["items"]) == 1
    assert (await client.patch(url, json={"email": "other@example.org"})).status_code == 422


async def test_two_moves_at_once_from_one_status_do_not_both_pass(
    service: Service, client: httpx.AsyncClient
) -> None:
    # new → declined and new → contacted are both allowed, and so are declined → contacted and
    # contacted → declined: both pass, one after the other, and each recorded move starts where
    # the previous one ended (never twice from "new").
    contact = await create(client)
    url = f"/api/v1/contacts/{contact['id']}"
    answers = await asyncio.gather(
        client.patch(url, json={"status": "declined"}),
        client.patch(url, json={"status": "contacted"}),
    )
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    history = (await client.get(f"{url}/history")).json()["items"]
    assert len(history) == 3
    for before, after in itertools.pairwise(history):
        assert after["from"] == before["to"]


async def test_lifecycle_is_described(service: Service, client: httpx.AsyncClient) -> None:
    described = (await client.get("/api/v1/contacts/lifecycle")).json()
    assert described["initial"] == "new"
    labels = {status["name"]: status["label"] for status in described["statuses"]}
    assert labels["confirmed"] == "Confirmé"
    unsubscribed = next(s for s in described["statuses"] if s["name"] == "unsubscribed")
    assert unsubscribed["next"] == ["bounced"]


async def test_delete_removes_the_contact_and_its_history(
    service: Service, client: httpx.AsyncClient
) -> None:
    contact = await create(client)
    assert (await client.delete(f"/api/v1/contacts/{contact['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/contacts/{contact['id']}")).status_code == 404
    assert (await client.delete(f"/api/v1/contacts/{contact['id']}")).status_code == 404
    assert await count(service) == (0, 0)


async def test_pages_follow_the_cursor(service: Service, client: httpx.AsyncClient) -> None:
    made = [await create(client, email=f"venue{n}@example.org") for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/contacts", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(contact["id"] for contact in made)
    bad = await client.get("/api/v1/contacts", params={"cursor": "garbage"})
    assert bad.status_code == 422


CSV = (
    "email,name,city,timezone,tags,capacity,consent_basis\r\n"
    "salle@lemans.example,Le Mans Live,Le Mans,Europe/Paris,salle;ouest,800,legitimate_interest\r\n"
    "broken-address,Nowhere,,,,,\r\n"
    "club@brest.example,Club,Brest,Mars/Olympus,,,\r\n"
    "\r\n"
    "only,two\r\n"
    "festival@quimper.example,\"Festival, Quimper\",Quimper,Europe/Paris,,5000,\r\n"
    "SALLE@lemans.example,Duplicate,,,,,\r\n"
)


async def test_a_csv_import_reports_every_row_and_keeps_only_the_good_ones(
    service: Service, client: httpx.AsyncClient
) -> None:
    await create(client, email="festival@quimper.example")
    answer = await client.post(
        "/api/v1/contacts/import", content=CSV.encode(), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["created"], report["exists"], report["error"]) == (1, 2, 3)
    rows = {row["row"]: row for row in report["rows"]}
    assert rows[1]["status"] == "created"
    assert (rows[2]["status"], rows[2]["errors"][0]["field"]) == ("error", "email")
    assert (rows[3]["status"], rows[3]["errors"][0]["field"]) == ("error", "timezone")
    assert rows[4]["status"] == "error" and "2 values for 7 columns" in rows[4]["errors"][0][
        "reason"]
    assert rows[5]["status"] == "exists"  # a contact already
    assert rows[6]["status"] == "exists"  # earlier in the same file
    imported = (await client.get(f"/api/v1/contacts/{rows[1]['id']}")).json()
    assert imported["tags"] == ["salle", "ouest"]
    assert imported["attributes"] == {"capacity": "800"}
    assert imported["consent"] == {"basis": "legitimate_interest", "source": None}
    history = (await client.get(f"/api/v1/contacts/{rows[1]['id']}/history")).json()
    assert history["items"][0]["source"] == "import"
    assert await count(service) == (2, 2)


async def test_a_json_lines_import(service: Service, client: httpx.AsyncClient) -> None:
    lines = [
        json.dumps({"email": "a@venue.example", "name": "A", "status": "contacted"}),
        "not json",
        json.dumps(["a", "list"]),
        json.dumps({"email": "b@venue.example", "status": "famous"}),
    ]
    answer = await client.post(
        "/api/v1/contacts/import", content="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    statuses = [(row["status"], row["errors"][0]["field"] if row["errors"] else None)
                for row in answer.json()["rows"]]
    assert statuses == [("created", None), ("error", "row"), ("error", "row"),
                        ("error", "status")]
    listed = (await client.get("/api/v1/contacts")).json()["items"]
    assert [(item["email"], item["status"]) for item in listed] == [
        ("a@venue.example", "contacted")]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "named"),
    [
        (b"name,city\r\nx,y\r\n", "text/csv", 422, "email"),
        (b"", "text/csv", 422, "body"),
        (b"email,email\r\na@b.example,c@d.example\r\n", "text/csv", 422, "twice"),
        (b"\xff\xfe\x00bad", "text/csv", 422, "UTF-8"),
        (b'{"email": "a@b.example"}', "application/json", 415, "Content-Type"),
        (b"email\r\na@b.example\r\n", "application/xml", 415, "Content-Type"),
    ],
)
async def test_a_bad_import_is_refused_whole_with_a_reason(
    service: Service, client: httpx.AsyncClient, body: bytes, content_type: str, status: int,
    named: str,
) -> None:
    answer = await client.post(
        "/api/v1/contacts/import", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text
    assert named in answer.json()["error"]["message"]
    assert await count(service) == (0, 0)
