"""A node's life with real parts: it starts degraded and answers, heals when Redis comes back,
refuses a taken capture-sink port at once, and starts and stops 50 times with mail in flight."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.api.server import ApiServer
from email_sender.db.schema import emails
from email_sender.errors import PortInUse
from email_sender.mail.message import EmailIn
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings
from tests.conftest import REDIS_URL, make_settings, wait_for
from tests.support.faultproxy import FaultProxy
from tests.support.smtp_server import SmtpTestServer

FAST = {
    "delivery.backoff.base": 0.05,
    "delivery.backoff.max": 0.2,
    "delivery.backoff.jitter": 0.0,
    "delivery.poll_interval": 0.05,
    "embedder.provider": "hashing",
}


def served(service: Service) -> ApiServer:
    """The node as ``serve`` runs it: the API manager added last, on a free port."""
    server = ApiServer(service)
    service.add(server)
    return server


async def get_health(url: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(f"{url}/health")
    return answer.status_code, answer.json(), time.monotonic() - started


@pytest.mark.redis
async def test_a_node_started_without_redis_answers_degraded_and_heals(tmp_path: Path) -> None:
    with FaultProxy("127.0.0.1", int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])) as proxy:
        proxy.refuse()  # Redis "down": every connection is closed at once
        settings = make_settings(
            tmp_path,
            f"sqlite+aiosqlite:///{tmp_path / 'node.db'}",
            **FAST,
            **{"event_bus.backend": "redis", "event_bus.redis_url": proxy.route(REDIS_URL)},
        )
        node = build_service(settings)
        # Retries every 0.2 s at first, capped at 1 s: the test waits for a heal, not a backoff.
        node.registry.retry_initial, node.registry.retry_max = 0.2, 1.0
        server = served(node)
        async with node:
            url = f"http://127.0.0.1:{server.port('api')}"
            for _ in range(3):
                code, body, seconds = await get_health(url)
                assert code == 200
                assert seconds < 1.0
                assert body["status"] == "degraded"
                # Failed, or caught in one of its retries (every 0.2 s here) with the reason.
                assert body["managers"]["event_bus"]["state"] in ("failed", "starting")
                assert "Redis" in body["failing"]["event_bus"]
                assert body["managers"]["email_sender"]["state"] == "failed"
                assert "dependency not running: event_bus" in body["failing"]["email_sender"]
                assert body["managers"]["api"]["state"] == "running"
            assert node.registry.status("event_bus").start_failures >= 1
            # Accepting still works: the email is committed, its event dropped and counted.
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                answer = await http.post("/api/v1/emails", json={
                    "from": "a@example.com", "to": ["b@example.org"],
                    "subject": "while degraded", "text": "hello"})
            assert answer.status_code == 202, answer.text
            while_degraded = answer.json()["id"]
            assert (await node.outbox.get(while_degraded))["status"] == "queued"
            assert node.bus.stats()["dropped"] >= 1

            proxy.pass_through()  # Redis comes back

            async def healthy() -> bool:
                code, body, _ = await get_health(url)
                return code == 200 and body["status"] == "ok"

            await wait_for(healthy, timeout=30, interval=0.2)
            accepted = await node.intake.accept(
                EmailIn.model_validate({"from": "a@example.com", "to": ["b@example.org"],
                                        "subject": "after the heal", "text": "hello"})
            )
            sink = node.get("smtp_sink")
            await wait_for(lambda: sink.count >= 2, timeout=30)

            async def both_sent() -> bool:
                # The sink counts a message before the worker has recorded its 250.
                statuses = [(await node.outbox.get(email_id))["status"]
                            for email_id in (accepted.id, while_degraded)]
                return statuses == ["sent", "sent"]

            await wait_for(both_sent, timeout=10)
            assert sink.count == 2


@pytest.mark.postgres
async def test_a_node_started_without_its_database_answers_down_and_heals(
    tmp_path: Path, pg_url: str
) -> None:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        proxy.refuse()  # PostgreSQL "down"
        node = build_service(make_settings(tmp_path, proxy.route(pg_url), **FAST))
        node.registry.retry_initial, node.registry.retry_max = 0.2, 1.0
        server = served(node)
        async with node:
            url = f"http://127.0.0.1:{server.port('api')}"
            answers: list[tuple[int, dict[str, Any], float]] = []

            async def database_failed() -> bool:
                # Retried every 0.2 s: an answer may catch the database "starting" again.
                answers.append(await get_health(url))
                return bool(answers[-1][1]["managers"]["database"]["state"] == "failed")

            await wait_for(database_failed, timeout=10, interval=0.05)
            for code, body, seconds in answers:
                assert (code, body["status"]) == (503, "down")
                assert seconds < 1.0
            code, body, _ = answers[-1]
            assert body["failing"]["database"]
            assert "dependency not running: database" in body["failing"]["email_sender"]

            proxy.pass_through()  # PostgreSQL comes back

            async def healthy() -> bool:
                code, body, _ = await get_health(url)
                return code == 200 and body["status"] == "ok"

            await wait_for(healthy, timeout=30, interval=0.2)

            async def listed() -> bool:  # the heartbeat row is written once it heals
                return node.node_id in {row["node_id"] for row in (await node.discovery())["nodes"]}

            await wait_for(listed, timeout=10)


async def test_a_taken_capture_sink_port_fails_the_build_naming_port_and_holder(
    tmp_path: Path,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = make_settings(tmp_path, **{"smtp.capture_sink.port": port})
        with pytest.raises(PortInUse) as caught:
            build_service(settings)
    message = str(caught.value)
    assert f"capture sink port {port} on 127.0.0.1 is already in use" in message
    assert f"(pid {os.getpid()})" in message
    assert "\n" not in message


class _HangingStop:
    """A manager whose stop swallows every cancellation and ends only when released."""

    name = "stubborn"
    depends_on: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.released = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                continue

    async def health(self) -> Any:
        from email_sender.managers import Health, State

        return Health(State.RUNNING)

    def info(self) -> dict[str, Any]:
        return {}


async def test_stop_is_bounded_even_when_a_manager_never_stops(tmp_path: Path) -> None:
    node = build_service(make_settings(tmp_path, **FAST))
    stubborn_manager = _HangingStop()
    node.add(stubborn_manager)
    served(node)
    await node.start()
    started = time.monotonic()
    try:
        await node.stop(timeout=2.0)
        elapsed = time.monotonic() - started
    finally:
        stubborn_manager.released.set()  # lets the abandoned task end before the loop closes
        await asyncio.sleep(0.05)
    assert elapsed < 3.0
    stubborn = node.registry.status("stubborn")
    assert stubborn.state == "failed"
    assert "gave no answer" in (stubborn.last_error or "")
    # What stops after the stubborn one (it was added late, so it stops early) still stopped.
    assert node.registry.status("database").state == "stopped"


async def _count(node: Service, status: str | None = None) -> int:
    query = select(func.count()).select_from(emails)
    if status is not None:
        query = query.where(emails.c.status == status)
    async with node.db.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


@pytest.mark.slow
@pytest.mark.timeout(400)  # about 65 s on a quiet 2-core machine, per database
async def test_a_full_node_starts_and_stops_50_times_with_mail_in_flight(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    smtp_server.data_delay = 0.02  # sends take a moment, so stops find some in progress
    settings = make_settings(
        tmp_path, database_url, **FAST,
        **{"smtp.relays": [RelaySettings(url=smtp_server.url, tls="none")],
           "server.shutdown_grace": 10.0},
    )
    accepted: list[str] = []
    slowest_stop = 0.0
    for cycle in range(50):
        node = build_service(settings)
        served(node)
        await node.start()
        assert node.registry.status("email_sender").state == "running", cycle
        for n in range(4):
            result = await node.intake.accept(
                EmailIn.model_validate({"from": "a@example.com", "to": [f"c{cycle}n{n}@x.org"],
                                        "subject": f"cycle {cycle} #{n}", "text": "in flight"})
            )
            accepted.append(result.id)
        await asyncio.sleep(0.01 * (cycle % 5))
        started = time.monotonic()
        await node.stop()
        slowest_stop = max(slowest_stop, time.monotonic() - started)
        # Every stop gives back its leases: nothing is left "sending" between two nodes.
        assert await _count(node, "sending") == 0, cycle
        await node.db.stop()
    assert slowest_stop < 10.0

    final = build_service(settings)
    async with final:
        async def all_sent() -> bool:
            return await _count(final, "sent") == len(accepted)

        await wait_for(all_sent, timeout=120, interval=0.2)
    received = smtp_server.accepted_ids()
    assert len(received) == len(accepted) == 200
    assert set(received.values()) == {1}, "an email was delivered twice"
