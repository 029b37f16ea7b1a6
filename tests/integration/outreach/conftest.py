"""A node for sequence tests: capture sink, inbound SMTP listener, unsubscribe links, and a
scheduler on a clock the test moves (the node's own scheduling loop is off)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.db.schema import enrolments, sequences
from email_sender.outreach.scheduler import Scheduler
from email_sender.service import Service, build_service
from tests.conftest import asgi_client, make_settings, wait_for

SENDER = "Tournée Booking <booking@tour.example>"
VERP_DOMAIN = "retours.tour.example"
SECRET = "an-unsubscribe-secret-for-tests"
# Monday 7 December 2026, 07:00 UTC: 08:00 in Paris, 02:00 in New York, 16:00 in Tokyo.
MONDAY = datetime(2026, 12, 7, 7, 0, tzinfo=UTC).timestamp()
SINK_WAIT = 30.0


class Clock:
    """The scheduler's time, moved by the test."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def outreach_node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp_path, database_url,
        **{
            "outreach.scheduling": False,
            "outreach.unsubscribe_secret": SECRET,
            "outreach.unsubscribe_url": "https://mail.tour.example/u/",
        },
    )
    settings.inbound.smtp.enabled = True
    settings.inbound.smtp.port = 0
    settings.inbound.smtp.domains = ["tour.example", VERP_DOMAIN]
    settings.inbound.verp_secret = "a-verp-secret-for-tests"  # type: ignore[assignment]
    settings.inbound.verp_domain = VERP_DOMAIN
    service = build_service(settings)
    async with service:
        yield service


@pytest.fixture
async def api(outreach_node: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(outreach_node) as client:
        yield client


def use_clock(service: Service, start: float = MONDAY) -> Clock:
    """Give the node a scheduler on a test clock, built from its settings as they are now."""
    clock = Clock(start)
    old = service.scheduler
    service.scheduler = Scheduler(
        service.db, service.intake, service.contacts, service.suppressions,
        service.settings.outreach, unsubscribe=old.unsubscribe,
        unsubscriber=service.unsubscriber, clock=clock,
    )
    return clock


def sink_messages(service: Service) -> list[EmailMessage]:
    """Every message the capture sink received, oldest first, parsed."""
    sink = service.get("smtp_sink")
    summaries = list(reversed(sink.messages(limit=100_000)))
    return [
        message_from_bytes(sink.raw(item["message_id"]), policy=policy.default)  # type: ignore
        for item in summaries
    ]


async def tick(service: Service, clock: Clock, arrivals: dict[str, float]) -> int:
    """One scheduler tick; wait for what it sent to reach the sink and stamp each arrival with
    the scheduler's time (the delivery log the rules are checked against)."""
    sink = service.get("smtp_sink")
    before = sink.count
    report = await service.scheduler.tick()
    if report.sent:
        await wait_for(lambda: sink.count >= before + report.sent, timeout=SINK_WAIT)
        for item in sink.messages(limit=sink.count - before):
            arrivals.setdefault(item["message_id"], clock.now)
    return report.sent


async def next_event(service: Service) -> float | None:
    """When a step falls due next (a step the sender's gap or a cap holds back is moved by the
    scheduler to when it may go); None when no enrolment is open."""
    async with service.db.connect() as connection:
        due: float | None = (await connection.execute(
            select(func.min(enrolments.c.next_at))
            .join(sequences, sequences.c.id == enrolments.c.sequence_id)
            .where(enrolments.c.status.in_(("active", "paused")), sequences.c.status == "active")
        )).scalar()
    return due


async def run_until(
    service: Service, clock: Clock, until: float, arrivals: dict[str, float]
) -> int:
    """Tick from event to event until ``until`` (or nothing is open); answer the ticks made."""
    ticks = 0
    while clock.now < until:
        await tick(service, clock, arrivals)
        ticks += 1
        following = await next_event(service)
        if following is None:
            break
        clock.now = min(max(following, clock.now + 1.0), until)
    return ticks


async def create_contacts(
    api: httpx.AsyncClient, people: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    created = []
    for person in people:
        answer = await api.post("/api/v1/contacts", json=person)
        assert answer.status_code == 201, answer.text
        created.append(answer.json())
    return created


async def create_sequence(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await api.post("/api/v1/sequences", json={"sender": SENDER, **fields})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())
