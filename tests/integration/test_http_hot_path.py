"""What every request pays for: the mode read once per refresh, manager gauges on change only."""

import asyncio
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from email_sender.api.app import create_metrics_app
from email_sender.modes import Mode
from email_sender.service import HEALTH_MAX_AGE, Service
from tests.conftest import wait_for


def _count_mode_reads(service: Service) -> list[str]:
    """Every statement that reads the mode, as the database receives it."""
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM settings" in statement:
            reads.append(statement)

    event.listen(service.db.engine.sync_engine, "before_cursor_execute", seen)
    return reads


async def test_a_stale_mode_is_read_once_for_every_request_waiting_on_it(
    service: Service,
) -> None:
    reads = _count_mode_reads(service)
    service.modes._read_at = 0.0  # stale: the next caller reads the database
    modes = await asyncio.gather(*(service.modes.current() for _ in range(50)))
    assert modes == [Mode.NORMAL] * 50
    assert len(reads) == 1
    # Fresh now: no further read until refresh_seconds have passed.
    await service.modes.current()
    assert len(reads) == 1


async def test_a_mode_change_is_not_undone_by_a_read_begun_before_it(service: Service) -> None:
    service.modes._read_at = 0.0
    stale_read = asyncio.ensure_future(service.modes.current())
    await asyncio.sleep(0)  # the read is under way
    await service.modes.set(Mode.READ_ONLY, actor="test")
    await stale_read
    assert service.modes.cached is Mode.READ_ONLY
    assert await service.modes.current() is Mode.READ_ONLY
    await service.modes.set(Mode.NORMAL, actor="test")


def _gauge(text: str, manager: str, state: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == "email_sender_manager_state" and item.labels == {
                "manager": manager, "state": state
            }:
                return float(item.value)
    return None


async def test_manager_state_gauges_follow_health_when_a_manager_fails(
    service: Service, client: httpx.AsyncClient
) -> None:
    transport = httpx.ASGITransport(app=create_metrics_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as metrics:
        for _ in range(3):  # unchanged states: the gauges keep their values
            assert (await client.get("/health")).status_code == 200
        text = (await metrics.get("/metrics")).text
        assert _gauge(text, "database", "running") == 1.0
        assert _gauge(text, "database", "failed") == 0.0
        await service.db.stop()
        service.db.url = "sqlite+aiosqlite:////dev/null/cannot/be.db"
        service._probed_at = -1.0  # the next /health probes afresh

        async def unhealthy() -> bool:
            return (await client.get("/health")).status_code == 503

        # A heartbeat's round that began before the stop may still answer for up to
        # HEALTH_MAX_AGE; the next round sees the failure.
        await wait_for(unhealthy, timeout=HEALTH_MAX_AGE + 5)
        text = (await metrics.get("/metrics")).text
        assert _gauge(text, "database", "running") == 0.0
        assert _gauge(text, "database", "failed") == 1.0
