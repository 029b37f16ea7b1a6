"""Sequences through the API (SQLite and PostgreSQL): what is refused and changes nothing,
enrolment reports, pause, resume, cancel, editing only what was not sent, a step that cannot be
rendered for its contact, and two schedulers on one database never sending a step twice."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.db.engine import Database
from email_sender.db.schema import emails, enrolments, outreach_sends, sequence_steps, sequences
from email_sender.outreach.scheduler import Scheduler
from email_sender.outreach.unsubscribe import list_unsubscribe_headers
from email_sender.service import Service
from tests.conftest import wait_for
from tests.integration.outreach.conftest import (
    MONDAY,
    SENDER,
    Clock,
    create_contacts,
    create_sequence,
    sink_messages,
    tick,
    use_clock,
)

FIRST = {"subject": "Une date ?", "text": "Bonjour {{ name }}"}
FOLLOW_UP = {"delay": "J+3", "text": "Relance pour {{ organisation }}"}


async def counts(service: Service) -> tuple[int, ...]:
    found = []
    async with service.db.connect() as connection:
        for table in (sequences, sequence_steps, enrolments, outreach_sends):
            count = await connection.execute(select(func.count()).select_from(table))
            found.append(int(count.scalar_one()))
    return tuple(found)


BAD_SEQUENCES = [
    ({"name": "x", "sender": SENDER, "steps": []}, "steps"),
    ({"name": "x", "sender": "not an address", "steps": [FIRST]}, "sender"),
    ({"name": "", "sender": SENDER, "steps": [FIRST]}, "name"),
    ({"name": "x", "sender": SENDER, "steps": [{"text": "no subject"}]}, "steps[0].subject"),
    ({"name": "x", "sender": SENDER, "steps": [{"subject": "s"}]}, "steps[0].text"),
    ({"name": "x", "sender": SENDER, "steps": [FIRST, {**FOLLOW_UP, "subject": "Other"}]},
     "steps[1].subject"),
    ({"name": "x", "sender": SENDER, "steps": [FIRST, {**FOLLOW_UP, "delay": "soon"}]},
     "delay"),
    ({"name": "x", "sender": SENDER, "steps": [FIRST, {**FOLLOW_UP, "delay": "J+999"}]},
     "delay"),
    ({"name": "x", "sender": SENDER,
      "steps": [FIRST, {**FOLLOW_UP, "text": "Bonjour {{ prénom_inconnu }}"}]}, "steps[1]"),
    ({"name": "x", "sender": SENDER,
      "steps": [FIRST, {**FOLLOW_UP, "text": "{% for x in %}"}]}, "steps[1].text"),
    ({"name": "x", "sender": SENDER,
      "steps": [FIRST, {**FOLLOW_UP, "conditions": {"statuses": ["famous"]}}]},
     "steps[1].conditions.statuses"),
    ({"name": "x", "sender": SENDER, "steps": [FIRST], "colour": "blue"}, "colour"),
]


async def test_a_bad_sequence_is_refused_by_name_and_stores_nothing(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    before = await counts(outreach_node)
    for body, named in BAD_SEQUENCES:
        answer = await api.post("/api/v1/sequences", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert named in answer.json()["error"]["message"], (body, answer.text)
    assert await counts(outreach_node) == before


async def test_no_sequence_without_unsubscribe_links(
    service: Service, client: httpx.AsyncClient
) -> None:
    """The plain node has no outreach.unsubscribe_url: a sequence could not carry the link."""
    before = await counts(service)
    answer = await client.post("/api/v1/sequences", json={"name": "x", "sender": SENDER,
                                                          "steps": [FIRST]})
    assert answer.status_code == 409, answer.text
    assert "outreach.unsubscribe_url" in answer.json()["error"]["message"]
    assert await counts(service) == before


async def test_an_undefined_field_names_the_step_and_the_name(api: httpx.AsyncClient) -> None:
    answer = await api.post("/api/v1/sequences", json={
        "name": "x", "sender": SENDER,
        "steps": [FIRST, {**FOLLOW_UP, "text": "Bonjour {{ venue_capacity }}"}]})
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert message.startswith("steps[1].text: uses 'venue_capacity', which is not a contact field")


async def test_enrolment_reports_each_contact_and_refuses_bad_requests(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    use_clock(outreach_node)
    people = await create_contacts(api, [
        {"email": "a@salle.example"}, {"email": "b@salle.example", "status": "declined"},
        {"email": "c@salle.example"},
    ])
    await api.post("/api/v1/suppressions", json={"address": "c@salle.example"})
    sequence = await create_sequence(api, name="Test", steps=[FIRST, FOLLOW_UP])
    url = f"/api/v1/sequences/{sequence['id']}/enrol"
    ids = [person["id"] for person in people]
    answer = await api.post(url, json={"contact_ids": [*ids, "no-such-contact", ids[0]]})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["contacts"] == {
        "enrolled": [ids[0]], "already": [], "unknown": ["no-such-contact"],
        "unreachable": [ids[1], ids[2]],
    }
    again = (await api.post(url, json={"contact_ids": [ids[0]]})).json()
    assert again["contacts"]["already"] == [ids[0]]

    before = await counts(outreach_node)
    for body, named in [
        ({}, "contact_ids"), ({"contact_ids": ids, "segment_id": "s"}, "contact_ids"),
        ({"contact_ids": "a"}, "contact_ids"), ({"people": ids}, "people"),
    ]:
        refused = await api.post(url, json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert named in refused.json()["error"]["message"], refused.text
    missing = await api.post("/api/v1/sequences/nope/enrol", json={"contact_ids": ids})
    assert missing.status_code == 404
    unknown_segment = await api.post(url, json={"segment_id": "nope"})
    assert unknown_segment.status_code == 404
    assert await counts(outreach_node) == before


async def test_a_segment_is_enrolled(outreach_node: Service, api: httpx.AsyncClient) -> None:
    use_clock(outreach_node)
    await create_contacts(api, [
        {"email": "jazz@club.example", "tags": ["jazz"]}, {"email": "rock@club.example"},
    ])
    segment = await api.post("/api/v1/segments", json={"name": "Jazz",
                                                       "filter": {"tags_any": ["jazz"]}})
    sequence = await create_sequence(api, name="Jazz", steps=[FIRST])
    answer = await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                            json={"segment_id": segment.json()["id"]})
    assert answer.json()["enrolled"] == 1
    [item] = (await api.get(f"/api/v1/sequences/{sequence['id']}/enrolments")).json()["items"]
    assert item["email"] == "jazz@club.example"


async def test_pause_resume_cancel_and_edit_only_what_was_not_sent(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    service = outreach_node
    service.settings.outreach.gap.min = service.settings.outreach.gap.max = 0.0
    clock = use_clock(service, MONDAY + 3 * 3600)
    people = await create_contacts(api, [{"email": f"v{n}@salle{n}.example",
                                          "timezone": "Europe/Paris"} for n in range(3)])
    sequence = await create_sequence(api, name="Pause", steps=[FIRST, FOLLOW_UP])
    base = f"/api/v1/sequences/{sequence['id']}"
    await api.post(f"{base}/enrol", json={"contact_ids": [people[0]["id"], people[1]["id"]]})
    arrivals: dict[str, float] = {}

    assert (await api.post(f"{base}/pause")).json()["status"] == "paused"
    assert (await api.get(f"{base}/preview")).json()["items"] == []
    assert await tick(service, clock, arrivals) == 0
    assert (await api.post(f"{base}/resume")).json()["status"] == "active"
    assert len((await api.get(f"{base}/preview")).json()["items"]) == 4
    assert await tick(service, clock, arrivals) == 2

    sent_step = await api.put(f"{base}/steps/0", json={**FIRST, "text": "Autre texte"})
    assert sent_step.status_code == 409, sent_step.text
    edited = await api.put(f"{base}/steps/1", json={**FOLLOW_UP, "text": "Nouvelle relance"})
    assert edited.status_code == 200, edited.text
    bad_edit = await api.put(f"{base}/steps/1", json={**FOLLOW_UP, "text": "{{ nope }}"})
    assert bad_edit.status_code == 422
    assert (await api.put(f"{base}/steps/5", json=FOLLOW_UP)).status_code == 404

    clock.now += 3 * 86400
    assert await tick(service, clock, arrivals) == 2
    follow_ups = [message for message in sink_messages(service) if "In-Reply-To" in message]
    assert {message.get_content().strip() for message in follow_ups} == {"Nouvelle relance"}

    assert (await api.post(f"{base}/cancel")).json()["status"] == "cancelled"
    assert (await api.post(f"{base}/resume")).status_code == 409
    refused = await api.post(f"{base}/enrol", json={"contact_ids": [people[2]["id"]]})
    assert refused.status_code == 409
    assert (await api.post("/api/v1/sequences/nope/pause")).status_code == 404


async def test_a_step_that_cannot_render_for_its_contact_fails_that_enrolment_only(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    service = outreach_node
    service.settings.outreach.gap.min = service.settings.outreach.gap.max = 0.0
    clock = use_clock(service, MONDAY + 3 * 3600)
    people = await create_contacts(api, [
        {"email": "ok@salle.example", "attributes": {"jauge": 300}},
        {"email": "sans@salle.example"},
    ])
    sequence = await create_sequence(api, name="Jauge", steps=[
        {"subject": "Jauge", "text": "Pour {{ attributes.jauge * 2 }} personnes"}])
    await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                   json={"contact_ids": [person["id"] for person in people]})
    assert await tick(service, clock, {}) == 1
    items = (await api.get(f"/api/v1/sequences/{sequence['id']}/enrolments")).json()["items"]
    by_email = {item["email"]: item for item in items}
    assert by_email["ok@salle.example"]["status"] == "completed"
    assert by_email["sans@salle.example"]["status"] == "failed"
    assert "step 0" in by_email["sans@salle.example"]["reason"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_schedulers_on_one_database_never_send_a_step_twice(
    outreach_node: Service, api: httpx.AsyncClient, database_url: str
) -> None:
    service = outreach_node
    outreach = service.settings.outreach
    outreach.gap.min = outreach.gap.max = 0.0
    outreach.caps.domain_hourly = outreach.caps.domain_daily = None
    clock = use_clock(service, MONDAY + 3 * 3600)
    people = await create_contacts(api, [{"email": f"v{n}@salle{n}.example",
                                          "timezone": "Europe/Paris"} for n in range(30)])
    sequence = await create_sequence(api, name="Deux", steps=[FIRST, FOLLOW_UP])
    await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                   json={"contact_ids": [person["id"] for person in people]})
    # A second scheduler with its own connection pool, as another process would have. Its
    # unsubscribe links differ, so the two even make different emails of one step (as after a
    # contact is edited between two tries): still one email per step.
    other_db = Database(database_url, pool_size=5)
    await other_db.start()
    try:
        other_clock = Clock(clock.now)
        links = functools.partial(list_unsubscribe_headers, secret=b"another secret",
                                  base_url="https://other.tour.example/u/")
        other = Scheduler(other_db, service.intake, service.contacts, service.suppressions,
                          outreach, clock=other_clock, unsubscribe=links)
        for moment in (clock.now, clock.now + 3 * 86400):
            clock.now = other_clock.now = moment
            for _ in range(3):
                await asyncio.gather(service.scheduler.tick(), other.tick())
    finally:
        await other_db.stop()
    async with service.db.connect() as connection:
        sends = (await connection.execute(select(func.count()).select_from(outreach_sends)))
        outreach_emails = await connection.execute(
            select(func.count()).select_from(emails).where(emails.c.idempotency_key.like(
                "outreach:%")))
        assert (sends.scalar_one(), outreach_emails.scalar_one()) == (60, 60)
    sink: Any = service.get("smtp_sink")
    await wait_for(lambda: sink.count >= 60, timeout=60)
    per_contact: dict[str, int] = {}
    for message in sink_messages(service):
        address = message["To"].addresses[0].addr_spec
        per_contact[address] = per_contact.get(address, 0) + 1
    assert set(per_contact.values()) == {2} and len(per_contact) == 30



async def test_reading_routes_refuse_bad_queries_by_name(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    sequence = await create_sequence(api, name="Lecture", steps=[FIRST])
    base = f"/api/v1/sequences/{sequence['id']}"
    for url, params, named in [
        (f"{base}/preview", {"count": 0}, "count"),
        (f"{base}/preview", {"count": 5000}, "count"),
        (f"{base}/enrolments", {"status": "sleeping"}, "status"),
        (f"{base}/enrolments", {"limit": 0}, "limit"),
    ]:
        answer = await api.get(url, params=params)
        assert answer.status_code == 422, (url, params, answer.text)
        assert named in answer.text
    for url in ("/api/v1/sequences/nope", "/api/v1/sequences/nope/preview",
                "/api/v1/sequences/nope/stats", "/api/v1/sequences/nope/enrolments"):
        assert (await api.get(url)).status_code == 404, url
    renamed = await api.patch(base, json={"name": ""})
    assert renamed.status_code == 422 and "name" in renamed.text
    resent = await api.patch(base, json={"sender": "nobody"})
    assert resent.status_code == 422 and "sender" in resent.text
    assert (await api.get(base)).json()["name"] == "Lecture"
