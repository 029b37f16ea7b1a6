"""Segments through the API on SQLite and PostgreSQL: each filter field selects what it says,
the matching contacts page like the contact list, and a bad filter is refused by name with
nothing stored."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from email_sender.db.schema import contacts, segments
from email_sender.errors import ValidationError
from email_sender.outreach import segments as segments_module
from email_sender.service import Service

DAY = 86_400.0


async def contact(client: httpx.AsyncClient, email: str, **fields: Any) -> str:
    answer = await client.post("/api/v1/contacts", json={"email": email, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def contacted(service: Service, contact_id: str, days_ago: float) -> None:
    """What the scheduler does when an outreach email to the contact is sent."""
    async with service.db.transaction() as connection:
        await connection.execute(
            update(contacts).where(contacts.c.id == contact_id)
            .values(last_contacted_at=time.time() - days_ago * DAY)
        )


async def segment(client: httpx.AsyncClient, name: str, filter: dict[str, Any]) -> str:
    answer = await client.post("/api/v1/segments", json={"name": name, "filter": filter})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def members(client: httpx.AsyncClient, segment_id: str) -> set[str]:
    answer = await client.get(f"/api/v1/segments/{segment_id}/contacts", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    assert answer.json()["next_cursor"] is None
    return {item["email"] for item in answer.json()["items"]}


async def stored_segments(service: Service) -> list[tuple[str, Any]]:
    async with service.db.connect() as connection:
        rows = await connection.execute(select(segments.c.name, segments.c.filter))
        return sorted((row.name, row.filter) for row in rows)


@pytest.fixture
async def venues(service: Service, client: httpx.AsyncClient) -> dict[str, str]:
    """Five venues, each one different on every field a filter reads."""
    made = {
        "cigale": await contact(
            client, "cigale@paris.example", country="FR", language="fr", timezone="Europe/Paris",
            tags=["salle", "paris"], attributes={"capacity": 1400, "genre": "rock",
                                                 "seated": False},
        ),
        "ancienne": await contact(
            client, "ab@bruxelles.example", country="be", language="fr-BE",
            timezone="Europe/Brussels", tags=["salle", "belgique"],
            attributes={"capacity": "2000", "genre": "pop"},
        ),
        "club": await contact(
            client, "club@brest.example", country="FR", language="br", timezone="Europe/Paris",
            tags=["club"], attributes={"capacity": 300, "seated": True},
        ),
        "festival": await contact(
            client, "festival@quimper.example", country="FR", language="fr",
            timezone="Europe/Paris", tags=["festival", "salle"], status="contacted",
            attributes={"capacity": 5000},
        ),
        "quote": await contact(
            client, "quote@odd.example", tags=['"salle'], attributes={"note": '"capacity"'},
        ),
    }
    await contacted(service, made["cigale"], days_ago=40)
    await contacted(service, made["festival"], days_ago=3)
    return made


SELECTIONS = [
    ({}, {"cigale", "ab", "club", "festival", "quote"}),
    ({"statuses": ["contacted", "declined"]}, {"festival"}),
    ({"tags_any": ["club", "festival"]}, {"club", "festival"}),
    # '"salle' is another tag, even though its JSON text holds "salle".
    ({"tags_all": ["salle", "paris"]}, {"cigale"}),
    ({"tags_any": ["salle"]}, {"cigale", "ab", "festival"}),
    ({"countries": ["fr", "BE"]}, {"cigale", "ab", "club", "festival"}),
    ({"languages": ["fr"]}, {"cigale", "ab", "festival"}),
    ({"timezones": ["Europe/Brussels"]}, {"ab"}),
    ({"attributes": {"genre": "rock"}}, {"cigale"}),
    ({"attributes": {"capacity": 2000}}, {"ab"}),  # numeric text from an import matches
    ({"attributes": {"capacity": {"gte": 1000, "lt": 5000}}}, {"cigale", "ab"}),
    ({"attributes": {"seated": False}}, {"cigale"}),  # false is not 0, nor absent
    ({"attributes": {"capacity": {"gt": 0}}}, {"cigale", "ab", "club", "festival"}),
    ({"never_contacted": True}, {"ab", "club", "quote"}),
    ({"never_contacted": False}, {"cigale", "festival"}),
    ({"last_contacted_before": "TIME-30"}, {"cigale"}),
    ({"last_contacted_after": "TIME-30"}, {"festival"}),
    ({"last_contacted_after": "TIME-60", "last_contacted_before": "TIME-1"},
     {"cigale", "festival"}),
    ({"countries": ["FR"], "tags_any": ["salle"], "never_contacted": True}, set()),
    ({"countries": ["FR"], "tags_any": ["salle"], "attributes": {"capacity": {"lte": 1400}}},
     {"cigale"}),
]


async def test_each_filter_field_selects_what_it_says(
    service: Service, client: httpx.AsyncClient, venues: dict[str, str]
) -> None:
    # One node for the whole table: each filter is a segment of its own over the same venues.
    for index, (given, expected) in enumerate(SELECTIONS):
        filter = dict(given)
        for name in ("last_contacted_before", "last_contacted_after"):
            if name in filter:
                days = float(filter[name].removeprefix("TIME-"))
                moment = time.time() - days * DAY
                filter[name] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(moment))
        segment_id = await segment(client, f"selection {index}", filter)
        found = await members(client, segment_id)
        assert {email.split("@")[0] for email in found} == expected, given
        ids = await service.segments.contact_ids(segment_id)
        assert len(ids) == len(expected), given


async def test_a_segment_is_created_read_listed_changed_and_deleted(
    service: Service, client: httpx.AsyncClient, venues: dict[str, str]
) -> None:
    created = (await client.post("/api/v1/segments", json={
        "name": "  Salles  ", "filter": {"tags_any": ["salle"], "countries": ["FR"]}})).json()
    assert created["name"] == "Salles"
    assert created["filter"] == {"tags_any": ["salle"], "countries": ["FR"]}
    url = f"/api/v1/segments/{created['id']}"
    assert (await client.get(url)).json() == created
    await segment(client, "Anyone", {})
    listed = (await client.get("/api/v1/segments")).json()["items"]
    assert [item["name"] for item in listed] == ["Anyone", "Salles"]

    renamed = await client.patch(url, json={"name": "Salles FR"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["filter"] == created["filter"]  # a rename keeps the filter
    refiltered = (await client.patch(url, json={"filter": {"statuses": ["contacted"]}})).json()
    assert (refiltered["name"], refiltered["filter"]) == ("Salles FR", {"statuses": ["contacted"]})
    assert await members(client, created["id"]) == {"festival@quimper.example"}

    assert (await client.delete(url)).status_code == 204
    for answer in (await client.get(url), await client.delete(url),
                   await client.patch(url, json={"name": "x"}),
                   await client.get(f"{url}/contacts")):
        assert answer.status_code == 404, answer.text
    assert len((await client.get("/api/v1/contacts")).json()["items"]) == 5  # contacts stay


async def test_a_segment_follows_its_contacts(
    service: Service, client: httpx.AsyncClient, venues: dict[str, str]
) -> None:
    segment_id = await segment(client, "Nouveaux", {"statuses": ["new"], "tags_any": ["club"]})
    assert await members(client, segment_id) == {"club@brest.example"}
    moved = await client.patch(f"/api/v1/contacts/{venues['club']}", json={"status": "contacted"})
    assert moved.status_code == 200
    assert await members(client, segment_id) == set()


async def test_the_same_name_twice_is_a_conflict(
    service: Service, client: httpx.AsyncClient
) -> None:
    first = await segment(client, "Salles", {"tags_any": ["salle"]})
    other = await segment(client, "Clubs", {"tags_any": ["club"]})
    again = await client.post("/api/v1/segments", json={"name": "Salles", "filter": {}})
    assert again.status_code == 409, again.text
    renamed = await client.patch(f"/api/v1/segments/{other}", json={"name": "Salles"})
    assert renamed.status_code == 409, renamed.text
    assert await stored_segments(service) == [
        ("Clubs", {"tags_any": ["club"]}), ("Salles", {"tags_any": ["salle"]})]
    assert (await client.get(f"/api/v1/segments/{first}")).json()["name"] == "Salles"


BAD_FILTERS = [
    ({"statuses": ["famous"]}, "filter.statuses"),
    ({"statuses": []}, "filter.statuses"),
    ({"statuses": "new"}, "filter.statuses"),
    ({"colour": "blue"}, "filter.colour"),
    ({"tags_any": [""]}, "filter.tags_any"),
    ({"tags_all": [f"t{n}" for n in range(101)]}, "filter.tags_all"),
    ({"attributes": {"capacity": {"between": [1, 2]}}}, "filter.attributes"),
    ({"attributes": {"capacity": {"gte": "ten"}}}, "filter.attributes"),
    ({"attributes": {"capacity": {}}}, "filter.attributes"),
    ({"attributes": {"genres": ["rock"]}}, "filter.attributes"),
    ({"attributes": ["capacity"]}, "filter.attributes"),
    ({"languages": ["français"]}, "filter.languages"),
    ({"timezones": ["Europe/Atlantis"]}, "filter.timezones"),
    ({"last_contacted_before": "2024-05-01T10:00:00"}, "filter.last_contacted_before"),
    ({"last_contacted_after": "yesterday"}, "filter.last_contacted_after"),
    ({"last_contacted_before": "2024-05-01T10:00:00Z",
      "last_contacted_after": "2024-06-01T10:00:00Z"}, "filter.last_contacted_after"),
    ({"never_contacted": True, "last_contacted_after": "2024-06-01T10:00:00Z"},
     "filter.never_contacted"),
    ({"never_contacted": "perhaps"}, "filter.never_contacted"),
]


async def test_a_bad_filter_is_refused_by_name_and_stores_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    existing = await segment(client, "Kept", {"tags_any": ["salle"]})
    before = await stored_segments(service)
    for filter, named in BAD_FILTERS:
        created = await client.post("/api/v1/segments", json={"name": "New", "filter": filter})
        changed = await client.patch(f"/api/v1/segments/{existing}", json={"filter": filter})
        for answer in (created, changed):
            assert answer.status_code == 422, (filter, answer.text)
            assert named in answer.json()["error"]["message"], (filter, answer.text)
    assert await stored_segments(service) == before


@pytest.mark.parametrize(
    ("body", "named", "patch_refused"),
    [
        ({"filter": {}}, "name", False),  # a PATCH may give the filter alone
        ({"name": "", "filter": {}}, "name", True),
        ({"name": "x" * 201, "filter": {}}, "name", True),
        ({"name": "Two\nlines", "filter": {}}, "name", True),
        ({"name": "Ok", "filter": {}, "members": []}, "members", True),
        ({"name": None}, "name", True),
        ({"name": "Ok", "filter": None}, "filter", True),
    ],
)
async def test_a_bad_name_or_body_is_refused_by_name_and_stores_nothing(
    service: Service, client: httpx.AsyncClient, body: dict[str, Any], named: str,
    patch_refused: bool,
) -> None:
    existing = await segment(client, "Kept", {})
    before = await stored_segments(service)
    created = await client.post("/api/v1/segments", json=body)
    assert created.status_code == 422, created.text
    assert named in created.json()["error"]["message"]
    if patch_refused:
        changed = await client.patch(f"/api/v1/segments/{existing}", json=body)
        assert changed.status_code == 422, changed.text
        assert named in changed.json()["error"]["message"]
    assert await stored_segments(service) == before


async def test_contacts_page_like_the_contact_list_and_ids_come_oldest_first(
    service: Service, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small scan batch: the pages and ids must still be right across batch ends.
    monkeypatch.setattr(segments_module, "SCAN_BATCH", 3)
    made = [
        await contact(client, f"venue{n}@example.org", tags=["salle" if n % 2 else "club"])
        for n in range(11)
    ]
    wanted = [contact_id for n, contact_id in enumerate(made) if n % 2]
    segment_id = await segment(client, "Salles", {"tags_any": ["salle"]})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/api/v1/segments/{segment_id}/contacts", params=params))
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(wanted))  # newest first, each once
    assert await service.segments.contact_ids(segment_id) == wanted
    assert await service.segments.contact_ids(segment_id, limit=2) == wanted[:2]
    everyone = await segment(client, "Everyone", {})
    assert await service.segments.contact_ids(everyone, limit=4) == made[:4]
    bad = await client.get(f"/api/v1/segments/{segment_id}/contacts", params={"cursor": "junk"})
    assert bad.status_code == 422 and "cursor" in bad.json()["error"]["message"]


async def test_the_store_checks_a_filter_given_as_json(service: Service) -> None:
    with pytest.raises(ValidationError) as refused:
        await service.segments.create("Bad", {"statuses": ["new"], "tags_any": "salle"})
    assert refused.value.field == "filter.tags_any"
    made = await service.segments.create("Good", {"statuses": ["new"]})
    assert made["filter"] == {"statuses": ["new"]}
    async with service.db.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(segments))).scalar() == 1
