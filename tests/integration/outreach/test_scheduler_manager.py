"""The outreach_scheduler manager on two nodes sharing one PostgreSQL: one schedules, the other
stands by, and takes over when the first stops; every step is sent once in all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from email_sender.service import Service, build_service
from tests.conftest import asgi_client, make_settings, wait_for
from tests.integration.outreach.conftest import SECRET, SENDER

ALWAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def node(tmp_path: Path, name: str, database_url: str) -> Service:
    settings = make_settings(
        tmp_path / name, database_url,
        # The lease lasts three ticks: 1.5 s outlives a stalled loop on a loaded 2-core machine,
        # so the leader keeps it until it stops. The hashing embedder keeps the loops light.
        **{"outreach.tick": 0.5, "embedder.provider": "hashing",
           "outreach.windows": ALWAYS, "outreach.gap.min": 0.0,
           "outreach.gap.max": 0.0, "outreach.gap.contact_min": 0.0,
           "outreach.unsubscribe_secret": SECRET,
           "outreach.unsubscribe_url": "https://mail.tour.example/u/"},
    )
    return build_service(settings)


def state(service: Service) -> str:
    manager: Any = service.get("outreach_scheduler")
    return "leader" if manager.leader else "standby"


def delivered(*services: Service) -> int:
    return sum(service.get("smtp_sink").count for service in services)


async def detail(service: Service) -> str | None:
    return (await service.get("outreach_scheduler").health()).detail


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_one_node_schedules_and_the_other_takes_over(
    tmp_path: Path, database_url: str
) -> None:
    first, second = node(tmp_path, "a", database_url), node(tmp_path, "b", database_url)
    await first.start()
    try:
        await wait_for(lambda: state(first) == "leader", timeout=10)
        await second.start()
        try:
            await wait_for(lambda: detail(second), timeout=10)
            assert await detail(second) == "standing by" and state(second) == "standby"
            async with asgi_client(first) as api:
                contacts = []
                for index in range(3):
                    made = await api.post("/api/v1/contacts",
                                          json={"email": f"v{index}@s.example"})
                    contacts.append(made.json()["id"])
                sequence = (await api.post("/api/v1/sequences", json={
                    "name": "Relais", "sender": SENDER,
                    "steps": [{"subject": "Date ?", "text": "Bonjour"},
                              {"delay": 2.0, "text": "Relance"}]})).json()
                await api.post(f"/api/v1/sequences/{sequence['id']}/enrol",
                               json={"contact_ids": contacts})
            await wait_for(lambda: delivered(first, second) >= 3, timeout=20)
            await first.stop()
            await wait_for(lambda: state(second) == "leader", timeout=10)
            await wait_for(lambda: delivered(first, second) >= 6, timeout=20)
            assert second.get("outreach_scheduler").sent == 3
            assert delivered(first, second) == 6
        finally:
            await second.stop()
    finally:
        await first.stop()
