"""A three-step sequence to 60 contacts over three time zones, run for four simulated weeks on
SQLite and PostgreSQL. Every rule is checked from what reached the SMTP sink, stamped with the
scheduler's time when it arrived: windows in each contact's zone, the sender's daily cap, each
domain's hourly and daily caps, the random gap, the delays between steps, one email per step,
follow-ups threaded under the first message, one-click unsubscribe headers."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx

from email_sender.outreach.rules import Windows
from email_sender.service import Service
from tests.integration.outreach.conftest import (
    MONDAY,
    create_contacts,
    create_sequence,
    run_until,
    sink_messages,
    use_clock,
)

ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo")
DOMAINS = [f"salle{index}.example" for index in range(6)]
SENDER_DAILY, DOMAIN_HOURLY, DOMAIN_DAILY = 25, 2, 6
GAP_MIN, GAP_MAX = 300.0, 900.0
DAY = 86400.0
STEPS = [
    {"delay": "J+0", "subject": "Proposition de date pour {{ organisation }}",
     "text": "Bonjour {{ first_name }},\nUne date à {{ city }} en mars ?\n{{ unsubscribe_url }}"},
    {"delay": "J+3", "text": "Bonjour {{ first_name }}, je me permets de relancer."},
    {"delay": "J+7", "text": "Dernière relance, {{ first_name }} !"},
]


def venues() -> list[dict[str, object]]:
    return [
        {
            "email": f"prog{index}@{DOMAINS[index % len(DOMAINS)]}",
            "name": f"Camille Salle{index}",
            "organisation": f"Salle {index}",
            "city": "Paris",
            "timezone": ZONES[index % len(ZONES)],
        }
        for index in range(60)
    ]


def arrived_at(message: EmailMessage, arrivals: dict[str, float]) -> float:
    return arrivals[str(message["Message-ID"]).strip()]


async def test_sixty_contacts_in_three_zones_get_every_step_within_every_rule(
    outreach_node: Service, api: httpx.AsyncClient
) -> None:
    service = outreach_node
    settings = service.settings.outreach
    settings.caps.sender_daily = SENDER_DAILY
    settings.caps.domain_hourly = DOMAIN_HOURLY
    settings.caps.domain_daily = DOMAIN_DAILY
    settings.gap.min, settings.gap.max = GAP_MIN, GAP_MAX
    clock = use_clock(service)
    contacts = await create_contacts(api, venues())
    zone_of = {contact["email"]: ZoneInfo(contact["timezone"]) for contact in contacts}
    sequence = await create_sequence(api, name="Mars 2027", steps=STEPS)
    enrolled = await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                              json={"contact_ids": [contact["id"] for contact in contacts]})
    assert enrolled.json()["enrolled"] == 60, enrolled.text

    preview = (await api.get(f"/api/v1/sequences/{sequence['id']}/preview",
                             params={"count": 40})).json()["items"]
    assert len(preview) == 40
    windows = Windows.from_settings(settings.windows)
    for planned in preview:
        moment = datetime.fromisoformat(planned["at"]).timestamp()
        assert windows.is_open(moment, zone_of[planned["email"]]), planned

    arrivals: dict[str, float] = {}
    await run_until(service, clock, MONDAY + 28 * DAY, arrivals)
    messages = sink_messages(service)
    assert len(messages) == 180 == len(arrivals)

    by_contact: dict[str, list[EmailMessage]] = defaultdict(list)
    for message in sorted(messages, key=lambda item: arrived_at(item, arrivals)):
        by_contact[message["To"].addresses[0].addr_spec].append(message)
    assert sorted(by_contact) == sorted(zone_of)

    times = sorted(arrivals.values())
    # The gap: never two sends closer than its minimum.
    assert all(later - earlier >= GAP_MIN for earlier, later in itertools.pairwise(times))
    # The sender's cap per day (days counted in outreach.timezone, UTC here).
    per_day = Counter(datetime.fromtimestamp(moment, ZoneInfo("UTC")).date() for moment in times)
    assert max(per_day.values()) <= SENDER_DAILY
    domain_hours: Counter[tuple[str, int]] = Counter()
    domain_days: Counter[tuple[str, object]] = Counter()
    for message in messages:
        address = message["To"].addresses[0].addr_spec
        moment = arrived_at(message, arrivals)
        # The window, in the contact's own zone.
        assert windows.is_open(moment, zone_of[address]), (address, moment)
        domain = address.rpartition("@")[2]
        domain_hours[domain, int(moment // 3600)] += 1
        domain_days[domain, datetime.fromtimestamp(moment, ZoneInfo("UTC")).date()] += 1
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(message["List-Unsubscribe"]).startswith("<https://mail.tour.example/u/")
    assert max(domain_hours.values()) <= DOMAIN_HOURLY
    assert max(domain_days.values()) <= DOMAIN_DAILY

    for address, thread in by_contact.items():
        first, second, third = thread  # exactly three: one email per step
        first_id = str(first["Message-ID"]).strip()
        assert str(first["Subject"]).startswith("Proposition de date pour Salle")
        assert "Camille" in first.get_content()
        for follow_up in (second, third):
            assert str(follow_up["In-Reply-To"]).strip() == first_id
            assert str(follow_up["References"]).strip() == first_id
            assert str(follow_up["Subject"]) == "Re: " + str(first["Subject"])
        sent = [arrived_at(message, arrivals) for message in thread]
        assert sent[1] - sent[0] >= 3 * DAY and sent[2] - sent[1] >= 7 * DAY, address

    stats = (await api.get(f"/api/v1/sequences/{sequence['id']}/stats")).json()
    assert stats["enrolments"] == {"completed": 60}
    assert [step["sent"] for step in stats["steps"]] == [60, 60, 60]
    assert stats["written_to"] == 60 and stats["reply_rate"] == 0.0
    contact = (await api.get(f"/api/v1/contacts/{contacts[0]['id']}")).json()
    assert contact["status"] == "contacted"
    history = (await api.get(f"/api/v1/contacts/{contacts[0]['id']}/history")).json()["items"]
    assert [(row["to"], row["source"]) for row in history] == [
        ("new", "user"), ("contacted", "sequence")]
